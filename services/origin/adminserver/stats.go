package adminserver

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"

	adminv1 "github.com/p2pd/p2pd/gen/admin/v1"
	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/metric"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// Metric names read for GetStats: the services' own counters
// (originserver, cacheserver, edgeserver).
const (
	metricOriginEgress = "p2pd_origin_egress_bytes_total"
	metricCacheServed  = "p2pd_cachenode_bytes_served_total"
	metricEdgeSent     = "p2pd_edge_bytes_sent_total"
)

// maxMetricsBytes bounds one node's /metrics answer (a node's is tens of
// kilobytes): a broken or hostile node cannot make the origin read
// without end.
const maxMetricsBytes = 16 << 20

// scrapeConcurrency bounds the nodes read at once, so a large CDN's
// stats do not open a connection to every node at the same moment.
const scrapeConcurrency = 16

// GetStats summarises the CDN: storage and load from the tracker, traffic
// summed over every live node's counters.
func (s *Server) GetStats(ctx context.Context, _ *adminv1.GetStatsRequest) (*adminv1.GetStatsResponse, error) {
	v, err := s.listNodes(ctx)
	if err != nil {
		return nil, err
	}
	resp := &adminv1.GetStatsResponse{NodesByRole: map[string]uint32{}, BytesServedBySource: map[string]uint64{}}
	published := map[string]bool{}
	for _, m := range s.origin.Files() {
		resp.Files++
		resp.PublishedBytes += uint64(m.Size)
		resp.PublishedChunks += uint64(m.ChunkCount())
		published[m.Root.String()] = true
	}
	var cachedChunks uint64
	for _, n := range v.nodes {
		resp.NodesByRole[roleName(n.Role)]++
		resp.ActiveStreams += uint64(n.Load)
		if n.Role != trackerv1.Role_ROLE_CACHENODE {
			continue
		}
		resp.CachedBytes += n.HeldBytes
		resp.CacheCapacityBytes += n.CapacityBytes
		for root, c := range v.holdings[n.Id].GetChunksByRoot() {
			if published[root] {
				cachedChunks += uint64(c)
			}
		}
	}
	if resp.PublishedChunks > 0 {
		resp.CacheReplication = float64(cachedChunks) / float64(resp.PublishedChunks)
	}
	s.addCounters(ctx, resp, v.nodes)
	return resp, nil
}

// addCounters fills the traffic figures from this process's metrics and
// every other live node's /metrics. Each ops listener is read once, however
// many nodes registered it: one process may host several (the single p2pd
// binary). Nodes without an ops listener report nothing unless they run in
// this process.
func (s *Server) addCounters(ctx context.Context, resp *adminv1.GetStatsResponse, nodes []*trackerv1.Node) {
	var sources [][]*dto.MetricFamily
	if s.cfg.Metrics != nil {
		// Gather returns what it could collect along with any error;
		// partial figures are still worth reporting.
		fams, err := s.cfg.Metrics.Gather()
		if err != nil {
			s.log.Warn("gather metrics for stats", "err", err)
		}
		sources = append(sources, fams)
	}
	byAddr := map[string][]string{} // ops address -> node ids registered with it
	for _, n := range nodes {
		if n.OpsAddr != "" && n.OpsAddr != s.cfg.OpsAddr {
			byAddr[n.OpsAddr] = append(byAddr[n.OpsAddr], n.Id)
		}
	}
	scraped := s.scrapeAll(ctx, byAddr)
	for addr, fams := range scraped {
		if fams == nil {
			resp.MetricsMissing = append(resp.MetricsMissing, byAddr[addr]...)
			continue
		}
		sources = append(sources, fams)
	}
	slices.Sort(resp.MetricsMissing)
	resp.MetricsSources = uint32(len(sources))

	var served, local float64
	var regions regionTotals
	defer regions.fill(resp)
	for _, fams := range sources {
		for _, f := range fams {
			switch f.GetName() {
			case metricOriginRegion, metricCacheRegion:
				regions.add(f)
			case metricOriginEgress:
				resp.OriginEgressBytes += uint64(metric.Sum(f.Metric, nil))
			case metricEdgeSent:
				resp.EdgeBytesSent += uint64(metric.Sum(f.Metric, nil))
			case metricCacheServed:
				for _, m := range f.Metric {
					src := "unknown"
					for _, l := range m.Label {
						if l.GetName() == "source" {
							src = l.GetValue()
						}
					}
					v := metric.Sum([]*dto.Metric{m}, nil)
					resp.BytesServedBySource[src] += uint64(v)
					served += v
					if src == "local" {
						local += v
					}
				}
			}
		}
	}
	if served > 0 {
		resp.HitRatio = local / served
	}
}

// scrapeAll reads every address's /metrics, a few at a time. A nil entry
// means the address did not answer.
func (s *Server) scrapeAll(ctx context.Context, byAddr map[string][]string) map[string][]*dto.MetricFamily {
	out := make(map[string][]*dto.MetricFamily, len(byAddr))
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		sem = make(chan struct{}, scrapeConcurrency)
	)
	for addr := range byAddr {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			fams, err := s.scrape(ctx, addr)
			if err != nil {
				s.log.Warn("read node metrics for stats", "addr", addr, "nodes", byAddr[addr], "err", err)
			}
			mu.Lock()
			out[addr] = fams
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// scrape reads one ops listener's metrics in the text format. Only the
// families GetStats sums are kept.
func (s *Server) scrape(ctx context.Context, addr string) ([]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ScrapeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, fmt.Errorf("metrics of %s: %w", addr, err)
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics of %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics of %s: %s", addr, resp.Status)
	}
	fams, err := metric.ParseText(io.LimitReader(resp.Body, maxMetricsBytes))
	if err != nil {
		return nil, fmt.Errorf("metrics of %s: %w", addr, err)
	}
	out := make([]*dto.MetricFamily, 0, 3)
	for name, f := range fams {
		switch name {
		case metricOriginEgress, metricCacheServed, metricEdgeSent, metricOriginRegion, metricCacheRegion:
			out = append(out, f)
		}
	}
	return out, nil
}
