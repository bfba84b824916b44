package trackerserver

import (
	"context"
	"time"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/rank"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// nodeStats is what this tracker has been told about a node's transfers.
// It lives in memory only: rates are a hint, and each tracker learning its
// own is cheaper than writing every sample to etcd.
type nodeStats struct {
	rate   rank.EWMA
	health *rank.Health
}

// ReportRate folds measured transfers into the sources' rates and health.
// Samples about nodes this tracker does not know are dropped, so the
// statistics stay bounded by the membership.
func (s *Server) ReportRate(ctx context.Context, req *trackerv1.ReportRateRequest) (*trackerv1.ReportRateResponse, error) {
	if n := len(req.Samples); n > s.cfg.MaxRateSamples {
		return nil, status.Errorf(codes.InvalidArgument, "report rate from %q: %d samples, at most %d allowed", req.Reporter, n, s.cfg.MaxRateSamples)
	}
	for i, smp := range req.Samples {
		if err := checkNodeID(smp.Source); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "report rate from %q: sample %d: %v", req.Reporter, i, err)
		}
		if smp.DurationNanos < 0 {
			return nil, status.Errorf(codes.InvalidArgument, "report rate from %q: sample %d: negative duration", req.Reporter, i)
		}
	}
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	live := map[string]bool{}
	s.idx.read(func(st *state) {
		for _, smp := range req.Samples {
			_, live[smp.Source] = st.nodes[smp.Source]
		}
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, smp := range req.Samples {
		if !live[smp.Source] {
			continue
		}
		ns := s.stats[smp.Source]
		if ns == nil {
			ns = &nodeStats{rate: rank.EWMA{Alpha: s.cfg.RateAlpha}, health: rank.NewHealth(s.cfg.Health, s.cfg.Now)}
			s.stats[smp.Source] = ns
		}
		if smp.Failed {
			ns.health.Failure()
			continue
		}
		ns.health.Success()
		if smp.Bytes >= s.cfg.MinRateSampleBytes && smp.DurationNanos > 0 {
			ns.rate.Add(float64(smp.Bytes) / time.Duration(smp.DurationNanos).Seconds())
		}
	}
	return &trackerv1.ReportRateResponse{}, nil
}

// candidates returns the ranking inputs that do not depend on the chunk.
func (s *Server) candidates(nodes []*trackerv1.Node) []rank.Candidate {
	out := make([]rank.Candidate, len(nodes))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, n := range nodes {
		out[i] = rank.Candidate{ID: n.Id, Load: n.Load}
		if ns := s.stats[n.Id]; ns != nil {
			out[i].Rate = ns.rate.Value()
			out[i].Probation = ns.health.Probation()
		}
	}
	return out
}

// forget drops the statistics of nodes that left.
func (s *Server) forget(ids []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		delete(s.stats, id)
	}
}
