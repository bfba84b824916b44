package originserver

import "github.com/prometheus/client_golang/prometheus"

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
		egress: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2pd_origin_egress_bytes_total",
			Help: "Chunk bytes the origin sent over SPP.",
		}),
		egressRegion: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2pd_origin_egress_region_bytes_total",
			Help: "Chunk bytes the origin sent over SPP, by the region of the node that asked.",
		}, []string{"destination_region"}),
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
