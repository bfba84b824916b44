package metric

import (
	"bytes"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// exposition is what an ops listener serving reg answers at /metrics.
func exposition(t *testing.T, reg *prometheus.Registry) *bytes.Buffer {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range fams {
		if err := enc.Encode(f); err != nil {
			t.Fatal(err)
		}
	}
	return &buf
}

func TestSumText(t *testing.T) {
	reg := prometheus.NewRegistry()
	fetched := CounterVec("fetched_bytes_total", "test", "source", "region")
	active := Gauge("active_streams", "test")
	reg.MustRegister(fetched, active)
	fetched.WithLabelValues("peer", "eu").Add(3)
	fetched.WithLabelValues("peer", "us").Add(4)
	fetched.WithLabelValues("origin", "eu").Add(10)
	active.Set(2.5)
	text := exposition(t, reg).String()

	tests := []struct {
		name string
		want map[string]string
		sum  float64
	}{
		{"fetched_bytes_total", nil, 17},
		{"fetched_bytes_total", map[string]string{"source": "peer"}, 7},
		{"fetched_bytes_total", map[string]string{"source": "peer", "region": "eu"}, 3},
		{"fetched_bytes_total", map[string]string{"source": "relay"}, 0},
		// An absent label has the empty value.
		{"fetched_bytes_total", map[string]string{"tier": ""}, 17},
		{"active_streams", nil, 2.5},
		{"no_such_metric", nil, 0},
	}
	for _, tt := range tests {
		got, err := SumText(bytes.NewBufferString(text), tt.name, tt.want)
		if err != nil {
			t.Fatal(err)
		}
		if got != tt.sum {
			t.Errorf("%s %v = %v, want %v", tt.name, tt.want, got, tt.sum)
		}
	}
	if _, err := SumText(bytes.NewBufferString("not { an exposition"), "x", nil); err == nil {
		t.Fatal("a malformed exposition parsed")
	}
}
