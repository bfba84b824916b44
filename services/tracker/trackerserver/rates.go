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
	rate   rank.EWMA // as measured by every reporter
	health *rank.Health
	// from is the rate as measured by each reporter: the link between two
	// nodes says more about the next transfer between them than the
	// source's average over everyone does.
	from map[string]*rank.EWMA
}

// maxReportersPerNode bounds nodeStats.from: reporters include edges,
// which never leave the index, so the map cannot be pruned by membership
// alone.
const maxReportersPerNode = 1024

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
			r := float64(smp.Bytes) / time.Duration(smp.DurationNanos).Seconds()
			ns.rate.Add(r)
			if req.Reporter != "" {
				pair := ns.from[req.Reporter]
				if pair == nil && len(ns.from) < maxReportersPerNode {
					if ns.from == nil {
						ns.from = map[string]*rank.EWMA{}
					}
					pair = &rank.EWMA{Alpha: s.cfg.RateAlpha}
					ns.from[req.Reporter] = pair
				}
				if pair != nil {
					pair.Add(r)
				}
			}
		}
	}
	return &trackerv1.ReportRateResponse{}, nil
}

// candidates returns the ranking inputs that do not depend on the chunk,
// with the rates requester measured itself where it reported any.
func (s *Server) candidates(nodes []*trackerv1.Node, requester string) []rank.Candidate {
	out := make([]rank.Candidate, len(nodes))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, n := range nodes {
		out[i] = rank.Candidate{ID: n.Id, Load: n.Load, Origin: n.Role == trackerv1.Role_ROLE_ORIGIN}
		if ns := s.stats[n.Id]; ns != nil {
			out[i].Rate = ns.rate.Value()
			if pair := ns.from[requester]; pair != nil && requester != "" {
				out[i].Rate = pair.Value()
			}
			out[i].Probation = ns.health.Probation()
		}
	}
	return out
}

// onProbation reports which of ids are on probation.
func (s *Server) onProbation(ids []string) map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]bool{}
	for _, id := range ids {
		if ns := s.stats[id]; ns != nil && ns.health.Probation() {
			out[id] = true
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
	for _, ns := range s.stats {
		for _, id := range ids {
			delete(ns.from, id)
		}
	}
}
