package adminserver

import (
	"testing"

	adminv1 "github.com/p2pd/p2pd/gen/admin/v1"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

// TestRegionTotals: region traffic is summed over the nodes that report
// it, per (source region, destination region, tier), in a stable order.
func TestRegionTotals(t *testing.T) {
	counter := func(v float64, kv ...string) *dto.Metric {
		m := &dto.Metric{Counter: &dto.Counter{Value: proto.Float64(v)}}
		for i := 0; i < len(kv); i += 2 {
			m.Label = append(m.Label, &dto.LabelPair{Name: proto.String(kv[i]), Value: proto.String(kv[i+1])})
		}
		return m
	}
	family := func(name string, ms ...*dto.Metric) *dto.MetricFamily {
		return &dto.MetricFamily{Name: proto.String(name), Metric: ms}
	}
	tests := []struct {
		name        string
		families    []*dto.MetricFamily
		wantOrigin  map[string]uint64
		wantTraffic []*adminv1.RegionTraffic
	}{
		{name: "nothing reported"},
		{
			name: "two nodes of one region and the origin",
			families: []*dto.MetricFamily{
				family(metricOriginRegion, counter(100, "destination_region", "a"), counter(50, "destination_region", "b")),
				family(metricCacheRegion, counter(100, "source_region", "", "destination_region", "a", "tier", "origin"),
					counter(30, "source_region", "a", "destination_region", "a", "tier", "relay")),
				family(metricCacheRegion, counter(20, "source_region", "a", "destination_region", "a", "tier", "relay"),
					counter(50, "source_region", "a", "destination_region", "b", "tier", "relay")),
			},
			wantOrigin: map[string]uint64{"a": 100, "b": 50},
			wantTraffic: []*adminv1.RegionTraffic{
				{SourceRegion: "", DestinationRegion: "a", Tier: "origin", Bytes: 100},
				{SourceRegion: "a", DestinationRegion: "a", Tier: "relay", Bytes: 50},
				{SourceRegion: "a", DestinationRegion: "b", Tier: "relay", Bytes: 50},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r regionTotals
			for _, f := range tt.families {
				r.add(f)
			}
			resp := &adminv1.GetStatsResponse{}
			r.fill(resp)
			want := &adminv1.GetStatsResponse{OriginEgressBytesByRegion: tt.wantOrigin, RegionTraffic: tt.wantTraffic}
			if !proto.Equal(resp, want) {
				t.Fatalf("stats = %v, want %v", resp, want)
			}
		})
	}
}
