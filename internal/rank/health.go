package rank

import (
	"sync"
	"time"
)

// Health tracks one node's recent failures. Each failure in a row puts the
// node on probation for twice as long as the previous one (Base, 2×Base,
// ... up to Max); a success ends the streak. A node on probation is still
// ranked, only after the healthy ones, so a lone source keeps being used.
// It is not safe for concurrent use.
type Health struct {
	cfg    HealthConfig
	now    func() time.Time
	streak int
	until  time.Time
}

// NewHealth returns a healthy node's record. now is the clock (time.Now
// when nil), injected so backoff is tested without sleeping.
func NewHealth(cfg HealthConfig, now func() time.Time) *Health {
	cfg.applyDefaults()
	if now == nil {
		now = time.Now
	}
	return &Health{cfg: cfg, now: now}
}

// Failure records a failed or stalled transfer and starts (or extends) the
// probation.
func (h *Health) Failure() {
	now := h.now()
	// A failure long after the last probation ended starts a new streak:
	// the node has been fine in between, just not used.
	if h.streak > 0 && now.Sub(h.until) > h.cfg.Max {
		h.streak = 0
	}
	d := h.cfg.Base
	for i := 0; i < h.streak && d < h.cfg.Max; i++ {
		d *= 2
	}
	d = min(d, h.cfg.Max)
	h.streak++
	h.until = now.Add(d)
}

// Success records a good transfer: the streak and any probation end.
func (h *Health) Success() {
	h.streak = 0
	h.until = time.Time{}
}

// Probation reports whether the node is backing off now.
func (h *Health) Probation() bool { return h.now().Before(h.until) }

// Until returns when the current probation ends (zero if none was set).
func (h *Health) Until() time.Time { return h.until }

// maxHealths bounds a Healths: node ids come from the tracker, so the set
// stays small, but a client prunes rather than trust that.
const maxHealths = 1024

// Healths is the failure memory of many nodes, as a client keeps it for
// the sources it fetches from: one Health per node, safe for concurrent
// use. The zero value is not ready; use NewHealths.
type Healths struct {
	cfg HealthConfig
	now func() time.Time

	mu sync.Mutex
	m  map[string]*Health
}

// NewHealths returns an empty set; cfg and now are each node's (NewHealth).
func NewHealths(cfg HealthConfig, now func() time.Time) *Healths {
	cfg.applyDefaults()
	if now == nil {
		now = time.Now
	}
	return &Healths{cfg: cfg, now: now, m: map[string]*Health{}}
}

// Failure records a failure of node id (Health.Failure).
func (hs *Healths) Failure(id string) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	h := hs.m[id]
	if h == nil {
		if len(hs.m) >= maxHealths {
			hs.prune()
		}
		h = NewHealth(hs.cfg, hs.now)
		hs.m[id] = h
	}
	h.Failure()
}

// Success records a good transfer from node id: it is forgotten.
func (hs *Healths) Success(id string) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	delete(hs.m, id)
}

// Probation reports whether node id is backing off now.
func (hs *Healths) Probation(id string) bool {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	h := hs.m[id]
	return h != nil && h.Probation()
}

// OnProbation returns those of ids that are backing off now, under one
// hold of the lock for the whole list (a job asks about every candidate
// of its chunks at once).
func (hs *Healths) OnProbation(ids []string) []string {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	var out []string
	for _, id := range ids {
		if h := hs.m[id]; h != nil && h.Probation() {
			out = append(out, id)
		}
	}
	return out
}

// prune forgets the nodes whose streak would restart anyway.
func (hs *Healths) prune() {
	now := hs.now()
	for id, h := range hs.m {
		if now.Sub(h.until) > hs.cfg.Max {
			delete(hs.m, id)
		}
	}
}
