package adminserver

import (
	"cmp"
	"slices"

	adminv1 "github.com/p2pd/p2pd/gen/admin/v1"
	"github.com/p2pd/p2pd/internal/metric"
	dto "github.com/prometheus/client_model/go"
)

// Metric names of traffic by region (originserver, cacheserver tier.go).
const (
	metricOriginRegion = "p2pd_origin_egress_region_bytes_total"
	metricCacheRegion  = "p2pd_cachenode_fetched_region_bytes_total"
)

// regionTotals sums the traffic by region over every node's counters.
type regionTotals struct {
	origin  map[string]uint64    // by destination region
	traffic map[[3]string]uint64 // by source region, destination region, tier
}

func (r *regionTotals) add(f *dto.MetricFamily) {
	if r.origin == nil {
		r.origin, r.traffic = map[string]uint64{}, map[[3]string]uint64{}
	}
	for _, m := range f.Metric {
		v := uint64(metric.Sum([]*dto.Metric{m}, nil))
		switch f.GetName() {
		case metricOriginRegion:
			r.origin[label(m, "destination_region")] += v
		case metricCacheRegion:
			r.traffic[[3]string{label(m, "source_region"), label(m, "destination_region"), label(m, "tier")}] += v
		}
	}
}

// fill sets the response's region figures, in a stable order.
func (r *regionTotals) fill(resp *adminv1.GetStatsResponse) {
	resp.OriginEgressBytesByRegion = r.origin
	for k, v := range r.traffic {
		resp.RegionTraffic = append(resp.RegionTraffic, &adminv1.RegionTraffic{SourceRegion: k[0], DestinationRegion: k[1], Tier: k[2], Bytes: v})
	}
	slices.SortFunc(resp.RegionTraffic, func(a, b *adminv1.RegionTraffic) int {
		return cmp.Or(cmp.Compare(a.DestinationRegion, b.DestinationRegion), cmp.Compare(a.SourceRegion, b.SourceRegion), cmp.Compare(a.Tier, b.Tier))
	})
}

// label returns the value of m's label name ("" if it has none).
func label(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
