package rank

import (
	"math"
	"testing"
)

func TestEWMA(t *testing.T) {
	tests := []struct {
		name    string
		alpha   float64
		samples []float64
		want    float64
	}{
		{"empty", 0, nil, 0},
		{"first sample taken as is", 0, []float64{100}, 100},
		{"default alpha", 0, []float64{100, 200}, 130},
		{"custom alpha", 0.5, []float64{100, 200, 200}, 175},
		{"alpha 1 follows last", 1, []float64{5, 7, 9}, 9},
		{"invalid alpha falls back", 2, []float64{100, 200}, 130},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := EWMA{Alpha: tt.alpha}
			for _, s := range tt.samples {
				e.Add(s)
			}
			if got := e.Value(); math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("Value = %v, want %v", got, tt.want)
			}
		})
	}
}
