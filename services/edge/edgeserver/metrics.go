package edgeserver

import (
	"github.com/p2pd/p2pd/internal/bufpool"
	"github.com/p2pd/p2pd/internal/chunkcache"
	"github.com/p2pd/p2pd/internal/metric"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests  *prometheus.CounterVec
	bytes     prometheus.Counter
	failovers prometheus.Counter
	active    prometheus.Gauge
	duration  prometheus.Histogram
	buffers   prometheus.GaugeFunc
	// memoryHits counts chunks served from the edge's memory cache.
	memoryHits prometheus.Counter
	memory     prometheus.GaugeFunc
	// sharedMisses counts misses that joined another viewer's fetch.
	sharedMisses prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, bufs *bufpool.Pool, hot *chunkcache.Cache) *metrics {
	m := &metrics{
		requests:     metric.CounterVec("p2pd_edge_requests_total", "Viewer HTTP requests answered, by status code (499: the viewer left first).", "code"),
		bytes:        metric.Counter("p2pd_edge_bytes_sent_total", "Response body bytes sent to viewers."),
		failovers:    metric.Counter("p2pd_edge_failovers_total", "Times a chunk stream moved to the next-ranked node after a failure, stall or bad chunk."),
		active:       metric.Gauge("p2pd_edge_active_requests", "Viewer requests being served."),
		duration:     metric.Histogram("p2pd_edge_request_duration_seconds", "Time from request to the last byte of the response.", prometheus.ExponentialBuckets(0.001, 4, 10)), // 1ms .. ~4.4min
		buffers:      metric.GaugeFunc("p2pd_edge_chunk_buffers_in_use", "Chunk buffers held by requests: memory per request is bounded by a few chunks.", func() float64 { return float64(bufs.InUse()) }),
		memoryHits:   metric.Counter("p2pd_edge_memory_cache_hits_total", "Chunks served from the edge's memory cache of verified chunks, with no request upstream."),
		sharedMisses: metric.Counter("p2pd_edge_shared_fetches_total", "Viewer misses that joined a fetch of the same chunks already in flight for another viewer, instead of fetching again."),
		memory:       metric.GaugeFunc("p2pd_edge_memory_cache_bytes", "Verified chunk bytes held in the edge's memory cache.", func() float64 { return float64(hot.Bytes()) }),
	}
	// The server errors an alert divides by the requests start at zero:
	// a series that appears with the first error hides that error from
	// rate() and increase().
	for _, code := range []string{"500", "502", "503", "504"} {
		m.requests.WithLabelValues(code)
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.bytes, m.failovers, m.active, m.duration, m.buffers, m.memoryHits, m.memory, m.sharedMisses)
	}
	return m
}
