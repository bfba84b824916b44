package cacheserver

import (
	"time"
)

// prefetch reads ahead of a sequential request: the chunks after its last
// one that the node neither holds nor is fetching are fetched into the
// store (through their holders or home, like any miss). It returns the
// function that lets the read-ahead outlive the request; until it is
// called, the end of the request's context cancels the read-ahead, so a
// viewer who seeks away (the edge cancels its stream) does not leave the
// node fetching chunks nobody will read. It returns nil when it started
// nothing.
//
// A request is sequential when it asks for a run of at least
// PrefetchTrigger consecutive chunks: edges open a stream with a window of
// one or two chunks and ask for longer ones only while the viewer reads
// on, so a random Range request never triggers read-ahead.
func (s *fetcher) prefetch(p *pipeline) func() bool {
	n := s.cfg.Prefetch
	if n <= 0 || !p.fetch || !p.relay || len(p.slots) < s.cfg.PrefetchTrigger {
		return nil
	}
	for i := 1; i < len(p.slots); i++ {
		if p.slots[i].idx != p.slots[i-1].idx+1 {
			return nil
		}
	}
	first := p.slots[len(p.slots)-1].idx + 1
	last := min(first+n, p.m.ChunkCount()) - 1
	if first > last || s.prefetchN.Load() >= int64(s.cfg.MaxPrefetch) {
		return nil
	}
	var ws []*want
	now := time.Now()
	for idx := first; idx <= last; idx++ {
		if f, owner := s.claim(chunkKey{p.m.Root, idx}); owner {
			ws = append(ws, &want{idx: idx, f: f, start: now})
		}
	}
	if len(ws) == 0 {
		return nil
	}
	s.prefetchN.Add(int64(len(ws)))
	s.metrics.prefetched.Add(float64(len(ws)))
	return s.goFetch(p.ctx, p.m, ws, fetchOpts{
		relay: true,
		abort: p.ctx,
		done:  func() { s.prefetchN.Add(-int64(len(ws))) },
	})
}
