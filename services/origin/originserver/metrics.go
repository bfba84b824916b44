package originserver

import (
	"github.com/p2pd/p2pd/internal/metric"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	egress         prometheus.Counter
	egressRegion   *prometheus.CounterVec
	chunks         prometheus.Counter
	digestFailures prometheus.Counter
	active         prometheus.Gauge
	files          prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		egress:         metric.Counter("p2pd_origin_egress_bytes_total", "Chunk bytes the origin sent over SPP."),
		egressRegion:   metric.CounterVec("p2pd_origin_egress_region_bytes_total", "Chunk bytes the origin sent over SPP, by the region of the node that asked.", "destination_region"),
		chunks:         metric.Counter("p2pd_origin_chunks_served_total", "Chunks the origin sent over SPP."),
		digestFailures: metric.Counter("p2pd_origin_digest_failures_total", "Chunks whose bytes on disk no longer matched the published digest."),
		active:         metric.Gauge("p2pd_origin_active_streams", "SPP fetch streams being served."),
		files:          metric.Gauge("p2pd_origin_published_files", "Files currently published."),
	}
	if reg != nil {
		reg.MustRegister(m.egress, m.egressRegion, m.chunks, m.digestFailures, m.active, m.files)
	}
	return m
}

// regionLabel bounds what a request's region label can add to the
// metrics: a label is short and plain, anything else counts as "other".
func regionLabel(r string) string {
	if len(r) > 32 {
		return "other"
	}
	for _, c := range r {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return "other"
		}
	}
	return r
}
