package cacheserver

import (
	"github.com/p2pd/p2pd/internal/chunkcache"
	"github.com/p2pd/p2pd/internal/chunkstore"
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
	prefetched     prometheus.Counter
	commands       *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, store *chunkstore.Store, hot *chunkcache.Cache) *metrics {
	m := &metrics{
		served: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2pd_cachenode_bytes_served_total",
			Help: "Chunk bytes sent over SPP, by where they came from (local store, a peer cachenode, the origin).",
		}, []string{"source"}),
		chunksServed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2pd_cachenode_chunks_served_total",
			Help: "Chunks sent over SPP, by where they came from: source=\"local\" is a cache hit, peer and origin are misses.",
		}, []string{"source"}),
		fetched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2pd_cachenode_fetched_bytes_total",
			Help: "Verified chunk bytes fetched from other nodes on a miss.",
		}, []string{"source"}),
		upstreamFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2pd_cachenode_upstream_failures_total",
			Help: "Upstream fetch streams that failed, stalled or sent bad bytes.",
		}, []string{"source"}),
		fetchSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "p2pd_cachenode_chunk_fetch_seconds",
			Help:    "Time from a miss to the chunk fetched and verified.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14), // 1 ms .. 8 s
		}, []string{"source"}),
		digestFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2pd_cachenode_digest_failures_total",
			Help: "Chunks that failed verification: sent wrong by a peer or origin, or damaged in the local store.",
		}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2pd_cachenode_store_errors_total",
			Help: "Verified chunks that could not be stored (disk full, I/O error); they were served anyway.",
		}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "p2pd_cachenode_active_streams",
			Help: "SPP fetch streams being served.",
		}),
		endGame: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2pd_cachenode_endgame_requests_total",
			Help: "Chunks asked of a second source while the first still had them outstanding (the end game of a multi-source fetch).",
		}),
		prefetched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2pd_cachenode_prefetched_chunks_total",
			Help: "Chunks fetched ahead of sequential playback, before anyone asked for them.",
		}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2pd_cachenode_commands_total",
			Help: "Operators' commands carried out, by action: purge (a file dropped from disk and memory), prewarm (a file fetched in full).",
		}, []string{"action"}),
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
	reg.MustRegister(m.served, m.chunksServed, m.fetched, m.upstreamFails, m.fetchSeconds, m.digestFailures, m.storeErrors, m.active, m.endGame, m.prefetched, m.commands,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "p2pd_cachenode_store_bytes",
			Help: "Chunk bytes held in the store.",
		}, func() float64 { return float64(store.Bytes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "p2pd_cachenode_memory_cache_bytes",
			Help: "Verified chunk bytes held in memory in front of the store.",
		}, func() float64 { return float64(hot.Bytes()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "p2pd_cachenode_memory_cache_hits_total",
			Help: "Chunks served from memory: no disk read, no second digest.",
		}, func() float64 { h, _, _ := hot.Stats(); return float64(h) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "p2pd_cachenode_store_max_bytes",
			Help: "The store's size limit.",
		}, func() float64 { return float64(store.MaxBytes()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "p2pd_cachenode_evictions_total",
			Help: "Chunks evicted to keep the store within its limit.",
		}, func() float64 { return float64(store.Evictions()) }),
	)
	return m
}
