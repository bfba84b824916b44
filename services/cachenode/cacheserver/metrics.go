package cacheserver

import (
	"github.com/p2pd/p2pd/internal/chunkcache"
	"github.com/p2pd/p2pd/internal/chunkstore"
	"github.com/p2pd/p2pd/internal/metric"
	"github.com/prometheus/client_golang/prometheus"
)

// Metric label values for where chunk bytes came from.
const (
	sourceLocal  = "local"
	sourcePeer   = "peer"
	sourceOrigin = "origin"
)

type metrics struct {
	served         *prometheus.CounterVec
	chunksServed   *prometheus.CounterVec
	fetched        *prometheus.CounterVec
	upstreamFails  *prometheus.CounterVec
	fetchSeconds   *prometheus.HistogramVec
	digestFailures prometheus.Counter
	storeErrors    prometheus.Counter
	active         prometheus.Gauge
	endGame        prometheus.Counter
	hedged         prometheus.Counter
	prefetched     prometheus.Counter
	commands       *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, store *chunkstore.Store, hot *chunkcache.Cache) *metrics {
	m := &metrics{
		served:         metric.CounterVec("p2pd_cachenode_bytes_served_total", "Chunk bytes sent over SPP, by where they came from (local store, a peer cachenode, the origin).", "source"),
		chunksServed:   metric.CounterVec("p2pd_cachenode_chunks_served_total", "Chunks sent over SPP, by where they came from: source=\"local\" is a cache hit, peer and origin are misses.", "source"),
		fetched:        metric.CounterVec("p2pd_cachenode_fetched_bytes_total", "Verified chunk bytes fetched from other nodes on a miss.", "source"),
		upstreamFails:  metric.CounterVec("p2pd_cachenode_upstream_failures_total", "Upstream fetch streams that failed, stalled or sent bad bytes.", "source"),
		fetchSeconds:   metric.HistogramVec("p2pd_cachenode_chunk_fetch_seconds", "Time from a miss to the chunk fetched and verified.", prometheus.ExponentialBuckets(0.001, 2, 14), "source"), // 1 ms .. 8 s
		digestFailures: metric.Counter("p2pd_cachenode_digest_failures_total", "Chunks that failed verification: sent wrong by a peer or origin, or damaged in the local store."),
		storeErrors:    metric.Counter("p2pd_cachenode_store_errors_total", "Verified chunks that could not be stored (disk full, I/O error); they were served anyway."),
		active:         metric.Gauge("p2pd_cachenode_active_streams", "SPP fetch streams being served."),
		endGame:        metric.Counter("p2pd_cachenode_endgame_requests_total", "Chunks asked of a second source while the first still had them outstanding (the end game of a multi-source fetch)."),
		hedged:         metric.Counter("p2pd_cachenode_hedged_chunks_total", "Chunks asked of the next source because the holder first asked sent nothing at all within the hedge delay (a stopped or cut-off node)."),
		prefetched:     metric.Counter("p2pd_cachenode_prefetched_chunks_total", "Chunks fetched ahead of sequential playback, before anyone asked for them."),
		commands:       metric.CounterVec("p2pd_cachenode_commands_total", "Operators' commands carried out, by action: purge (a file dropped from disk and memory), prewarm (a file fetched in full).", "action"),
	}
	for _, a := range []string{"purge", "prewarm"} {
		m.commands.WithLabelValues(a)
	}
	for _, src := range []string{sourceLocal, sourcePeer, sourceOrigin} {
		m.served.WithLabelValues(src)
		m.chunksServed.WithLabelValues(src)
	}
	for _, src := range []string{sourcePeer, sourceOrigin} {
		m.fetched.WithLabelValues(src)
		m.upstreamFails.WithLabelValues(src)
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.served, m.chunksServed, m.fetched, m.upstreamFails, m.fetchSeconds, m.digestFailures, m.storeErrors, m.active, m.endGame, m.hedged, m.prefetched, m.commands,
		metric.GaugeFunc("p2pd_cachenode_store_bytes", "Chunk bytes held in the store.", func() float64 { return float64(store.Bytes()) }),
		metric.GaugeFunc("p2pd_cachenode_memory_cache_bytes", "Verified chunk bytes held in memory in front of the store.", func() float64 { return float64(hot.Bytes()) }),
		metric.CounterFunc("p2pd_cachenode_memory_cache_hits_total", "Chunks served from memory: no disk read, no second digest.", func() float64 { h, _, _ := hot.Stats(); return float64(h) }),
		metric.GaugeFunc("p2pd_cachenode_store_max_bytes", "The store's size limit.", func() float64 { return float64(store.MaxBytes()) }),
		metric.CounterFunc("p2pd_cachenode_evictions_total", "Chunks evicted to keep the store within its limit.", func() float64 { return float64(store.Evictions()) }),
	)
	return m
}
