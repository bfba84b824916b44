package edgeserver

import (
	"github.com/p2pd/p2pd/internal/bufpool"
	"github.com/p2pd/p2pd/internal/chunkcache"
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
}

func newMetrics(reg prometheus.Registerer, bufs *bufpool.Pool, hot *chunkcache.Cache) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2pd_edge_requests_total",
			Help: "Viewer HTTP requests answered, by status code (499: the viewer left first).",
		}, []string{"code"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2pd_edge_bytes_sent_total",
			Help: "Response body bytes sent to viewers.",
		}),
		failovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2pd_edge_failovers_total",
			Help: "Times a chunk stream moved to the next-ranked node after a failure, stall or bad chunk.",
		}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "p2pd_edge_active_requests",
			Help: "Viewer requests being served.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "p2pd_edge_request_duration_seconds",
			Help:    "Time from request to the last byte of the response.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10), // 1ms .. ~4.4min
		}),
		buffers: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "p2pd_edge_chunk_buffers_in_use",
			Help: "Chunk buffers held by requests: memory per request is bounded by a few chunks.",
		}, func() float64 { return float64(bufs.InUse()) }),
		memoryHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2pd_edge_memory_cache_hits_total",
			Help: "Chunks served from the edge's memory cache of verified chunks, with no request upstream.",
		}),
		memory: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "p2pd_edge_memory_cache_bytes",
			Help: "Verified chunk bytes held in the edge's memory cache.",
		}, func() float64 { return float64(hot.Bytes()) }),
	}
	// The server errors an alert divides by the requests start at zero:
	// a series that appears with the first error hides that error from
	// rate() and increase().
	for _, code := range []string{"500", "502", "503", "504"} {
		m.requests.WithLabelValues(code)
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.bytes, m.failovers, m.active, m.duration, m.buffers, m.memoryHits, m.memory)
	}
	return m
}
