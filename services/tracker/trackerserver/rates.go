package trackerserver

import (
	"context"
	"time"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/nodeauth"
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
	// fromHealth is the source's health as reported by each reporter that
	// did not prove it is a registered node (an edge): it puts the source
	// on probation for that reporter's own ranking only.
	fromHealth map[string]*rank.Health
}

// reporter is what the tracker remembers of one reporter, to bound how
// much it may say: a token bucket of calls, and when it last counted a
// failure against each source.
type reporter struct {
	tokens float64
	last   time.Time
	failed map[string]time.Time
}

// reportsPerSecond and reportBurst bound each reporter's ReportRate
// calls: nodes report every 1-2 s, so this is ten times what an honest
// one sends.
const (
	reportsPerSecond = 5
	reportBurst      = 20
	// failureEvery: a reporter's failure reports about one source count
	// at most this often, so one reporter cannot drive a source's
	// probation to its maximum by repeating itself.
	failureEvery = time.Second
	// maxReporters bounds the reporters remembered.
	maxReporters = 1 << 14
)

// maxReportersPerNode bounds nodeStats.from: reporters include edges,
// which never leave the index, so the map cannot be pruned by membership
// alone.
const maxReportersPerNode = 1024

// ReportRate folds measured transfers into the sources' rates and health.
// Samples about nodes this tracker does not know, or about the reporter
// itself, are dropped, so the statistics stay bounded by the membership
// and nobody grades itself. A registered node's reports (lease and secret
// given) count for everyone; anyone else's count only in the rates and
// probation ranked for that reporter's own Locate calls, and never under
// the id of a live registered node. Each reporter's calls are rate
// limited.
func (s *Server) ReportRate(ctx context.Context, req *trackerv1.ReportRateRequest) (*trackerv1.ReportRateResponse, error) {
	if n := len(req.Samples); n > s.cfg.MaxRateSamples {
		return nil, status.Errorf(codes.InvalidArgument, "report rate from %q: %d samples, at most %d allowed", req.Reporter, n, s.cfg.MaxRateSamples)
	}
	if req.Reporter != "" {
		if err := checkNodeID(req.Reporter); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "report rate: reporter: %v", err)
		}
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
	trusted := false
	if req.LeaseId != 0 || req.Secret != "" {
		if _, err := s.checkLease(ctx, "report rate", req.Reporter, req.LeaseId, req.Secret); err != nil {
			return nil, err
		}
		trusted = true
	}
	if p := nodeauth.FromContext(ctx); p.HasID && p.Identity.Role != nodeauth.RoleAdmin && p.Identity.ID != req.Reporter {
		return nil, status.Errorf(codes.PermissionDenied, "report rate as %q: the caller's certificate names %s", req.Reporter, p.Identity.ID)
	}
	live := map[string]bool{}
	reporterLive := false
	s.idx.read(func(st *state) {
		for _, smp := range req.Samples {
			_, live[smp.Source] = st.nodes[smp.Source]
		}
		_, reporterLive = st.nodes[req.Reporter]
	})
	if !trusted && reporterLive {
		return nil, status.Errorf(codes.PermissionDenied, "report rate as %q: a registered node reports with its lease and secret", req.Reporter)
	}
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	rep := s.reporterOf(req.Reporter, now)
	if rep == nil {
		return nil, status.Errorf(codes.ResourceExhausted, "report rate from %q: more than %d reports a second", req.Reporter, reportsPerSecond)
	}
	for _, smp := range req.Samples {
		if !live[smp.Source] || smp.Source == req.Reporter {
			continue
		}
		ns := s.stats[smp.Source]
		if ns == nil {
			ns = &nodeStats{rate: rank.EWMA{Alpha: s.cfg.RateAlpha}, health: rank.NewHealth(s.cfg.Health, s.cfg.Now)}
			s.stats[smp.Source] = ns
		}
		health := ns.health
		if !trusted {
			health = ns.healthFrom(req.Reporter, s.cfg)
		}
		if smp.Failed && s.probe != nil {
			s.probe.failed(smp.Source, trusted)
		}
		if smp.Failed {
			if health == nil || now.Sub(rep.failed[smp.Source]) < failureEvery {
				continue
			}
			rep.failed[smp.Source] = now
			health.Failure()
			continue
		}
		if health != nil {
			health.Success()
		}
		if smp.Bytes >= s.cfg.MinRateSampleBytes && smp.DurationNanos > 0 {
			r := float64(smp.Bytes) / time.Duration(smp.DurationNanos).Seconds()
			if trusted {
				ns.rate.Add(r)
			}
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

// healthFrom returns the source's health as id reports it (nil when too
// many reporters are known, or id is empty); s.mu is held.
func (ns *nodeStats) healthFrom(id string, cfg Config) *rank.Health {
	if id == "" {
		return nil
	}
	h := ns.fromHealth[id]
	if h == nil && len(ns.fromHealth) < maxReportersPerNode {
		if ns.fromHealth == nil {
			ns.fromHealth = map[string]*rank.Health{}
		}
		h = rank.NewHealth(cfg.Health, cfg.Now)
		ns.fromHealth[id] = h
	}
	return h
}

// reporterOf takes one call from id's bucket and returns its record, or
// nil when the bucket is empty (or too many reporters are known); s.mu is
// held.
func (s *Server) reporterOf(id string, now time.Time) *reporter {
	r := s.reporters[id]
	if r == nil {
		if len(s.reporters) >= maxReporters {
			for k, v := range s.reporters {
				if now.Sub(v.last) > time.Minute {
					delete(s.reporters, k)
				}
			}
			if len(s.reporters) >= maxReporters {
				return nil
			}
		}
		r = &reporter{tokens: reportBurst, last: now, failed: map[string]time.Time{}}
		s.reporters[id] = r
	}
	r.tokens = min(reportBurst, r.tokens+now.Sub(r.last).Seconds()*reportsPerSecond)
	r.last = now
	if r.tokens < 1 {
		return nil
	}
	r.tokens--
	return r
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
			if h := ns.fromHealth[requester]; h != nil && requester != "" && h.Probation() {
				out[i].Probation = true
			}
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
		delete(s.reporters, id)
	}
	for _, ns := range s.stats {
		for _, id := range ids {
			delete(ns.from, id)
			delete(ns.fromHealth, id)
		}
	}
	s.secrets.forget(ids)
	if s.probe != nil {
		s.probe.forget(ids)
	}
}
