package originserver

import (
	"github.com/p2pd/p2pd/internal/metric"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	egress         prometheus.Counter
	chunks         prometheus.Counter
	digestFailures prometheus.Counter
	active         prometheus.Gauge
	files          prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		egress:         metric.Counter("p2pd_origin_egress_bytes_total", "Chunk bytes the origin sent over SPP."),
		chunks:         metric.Counter("p2pd_origin_chunks_served_total", "Chunks the origin sent over SPP."),
		digestFailures: metric.Counter("p2pd_origin_digest_failures_total", "Chunks whose bytes on disk no longer matched the published digest."),
		active:         metric.Gauge("p2pd_origin_active_streams", "SPP fetch streams being served."),
		files:          metric.Gauge("p2pd_origin_published_files", "Files currently published."),
	}
	if reg != nil {
		reg.MustRegister(m.egress, m.chunks, m.digestFailures, m.active, m.files)
	}
	return m
}
