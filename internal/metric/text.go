package metric

import (
	"io"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// ParseText reads a Prometheus text exposition (what an ops listener's
// /metrics answers), by metric name.
func ParseText(r io.Reader) (map[string]*dto.MetricFamily, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(r)
}

// Sum adds up the counter, gauge and untyped samples of ms whose labels
// include every name and value of want (nil: all of them).
func Sum(ms []*dto.Metric, want map[string]string) float64 {
	var sum float64
	for _, m := range ms {
		if !hasLabels(m, want) {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Untyped != nil:
			sum += m.Untyped.GetValue()
		}
	}
	return sum
}

// SumText sums the samples of the metric called name in a text
// exposition whose labels include want (nil: all); 0 when it is absent.
func SumText(r io.Reader, name string, want map[string]string) (float64, error) {
	fams, err := ParseText(r)
	if err != nil {
		return 0, err
	}
	return Sum(fams[name].GetMetric(), want), nil
}

// hasLabels reports whether m carries every label of want; an absent
// label has the empty value, as in Prometheus.
func hasLabels(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		got := ""
		for _, l := range m.GetLabel() {
			if l.GetName() == k {
				got = l.GetValue()
				break
			}
		}
		if got != v {
			return false
		}
	}
	return true
}
