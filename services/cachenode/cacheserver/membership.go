package cacheserver

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/services/tracker/trackerclient"
)

// membership is what the tracker knows of this node and how it is kept
// current: the registration, the holdings that changed since the last
// announce, the load (streams served) and the measured rates.
type membership struct {
	*base
	*known  // a file's chunk count, to announce its holdings
	started time.Time
	member  atomic.Pointer[trackerclient.Member] // nil while not joined
	dirty   dirtySet
	rates   *trackerclient.Reporter // shared with the fetcher, which measures
	active  atomic.Int64            // streams being served
}

// Node describes this cachenode for tracker registration.
func (s *membership) Node() *trackerv1.Node {
	return &trackerv1.Node{
		Id:              s.cfg.NodeID,
		Role:            trackerv1.Role_ROLE_CACHENODE,
		GrpcAddr:        s.cfg.Advertise,
		HttpAddr:        s.cfg.HTTPAddr,
		OpsAddr:         s.cfg.OpsAddr,
		CapacityBytes:   uint64(s.store.MaxBytes()),
		HeldBytes:       uint64(s.store.Bytes()),
		Load:            uint32(s.active.Load()),
		UpSinceUnixNano: s.started.UnixNano(),
		Region:          s.cfg.Region,
		Shield:          s.cfg.Shield,
		Parent:          s.cfg.Parent,
	}
}

// Haves returns the node's full holdings, one Have per file; the tracker
// member sends them after every (re-)registration.
func (s *membership) Haves() []*trackerv1.Have {
	roots := s.store.Roots()
	hs := make([]*trackerv1.Have, 0, len(roots))
	for _, root := range roots {
		if h := s.have(root); h != nil {
			hs = append(hs, h)
		}
	}
	return hs
}

// have returns the holdings of root, nil when its manifest is unknown.
func (s *membership) have(root manifest.Digest) *trackerv1.Have {
	m, err := s.localManifest(root)
	if err != nil {
		return nil
	}
	h := &trackerv1.Have{Root: root[:], ChunkCount: uint32(m.ChunkCount())}
	// An empty bitmap removes the node's record for the file.
	if b := s.store.Held(root, m.ChunkCount()); b.Count() > 0 {
		h.Bitmap = b.Encode()
	}
	return h
}

// dirtySet collects the roots whose holdings changed since the last flush,
// so a burst of puts becomes one bitmap per file.
type dirtySet struct {
	mu sync.Mutex
	m  map[manifest.Digest]bool
}

func (d *dirtySet) mark(root manifest.Digest) {
	d.mu.Lock()
	d.m[root] = true
	d.mu.Unlock()
}

func (d *dirtySet) take() []manifest.Digest {
	d.mu.Lock()
	defer d.mu.Unlock()
	roots := make([]manifest.Digest, 0, len(d.m))
	for r := range d.m {
		roots = append(roots, r)
		delete(d.m, r)
	}
	return roots
}

func (s *membership) flushHoldings(m *trackerclient.Member) {
	roots := s.dirty.take()
	if len(roots) == 0 {
		return
	}
	for _, root := range roots {
		if h := s.have(root); h != nil {
			m.Update(h)
		}
	}
	m.SetLoad(uint32(s.active.Load()), uint64(s.store.Bytes()))
}

// streamStarted and streamEnded count served streams: the load the
// tracker ranks nodes by.
func (s *membership) streamStarted() {
	n := s.active.Add(1)
	s.metrics.active.Set(float64(n))
	if m := s.member.Load(); m != nil {
		m.SetLoad(uint32(n), uint64(s.store.Bytes()))
	}
}

func (s *membership) streamEnded() {
	n := s.active.Add(-1)
	s.metrics.active.Set(float64(n))
	if m := s.member.Load(); m != nil {
		m.SetLoad(uint32(n), uint64(s.store.Bytes()))
	}
}

func (s *membership) flushRates(ctx context.Context) {
	m := s.member.Load()
	if m == nil {
		return // not joined: nobody to report as
	}
	// Through the membership: a report carries the registration's id and
	// secret.
	if err := s.rates.Flush(ctx, m, "", s.cfg.RPCTimeout); err != nil {
		s.log.Debug("report rates", "err", err)
	}
}
