package originserver

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	egress         prometheus.Counter
	chunks         prometheus.Counter
	digestFailures prometheus.Counter
	active         prometheus.Gauge
	files          prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		egress: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2pd_origin_egress_bytes_total",
			Help: "Chunk bytes the origin sent over SPP.",
		}),
		chunks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2pd_origin_chunks_served_total",
			Help: "Chunks the origin sent over SPP.",
		}),
		digestFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2pd_origin_digest_failures_total",
			Help: "Chunks whose bytes on disk no longer matched the published digest.",
		}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "p2pd_origin_active_streams",
			Help: "SPP fetch streams being served.",
		}),
		files: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "p2pd_origin_published_files",
			Help: "Files currently published.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.egress, m.chunks, m.digestFailures, m.active, m.files)
	}
	return m
}
