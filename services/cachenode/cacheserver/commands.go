package cacheserver

import (
	"context"
	"sync"
	"time"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/services/tracker/trackerclient"
)

// Operators' commands, as the tracker hands them out (WatchCommands):
// purge drops a file from this node, disk and memory; prewarm fetches
// every chunk of a file into the store before anyone asks.

// prewarms are the prewarms running on the node, by root, so a purge (or
// a second prewarm of the same file) can find them.
type prewarms struct {
	mu sync.Mutex
	m  map[manifest.Digest]context.CancelFunc
}

// followCommands carries out the commands meant for this node until ctx
// ends.
func (s *housekeeping) followCommands(ctx context.Context) {
	s.tracker.FollowCommands(ctx, s.cfg.NodeID, s.log, s.apply)
}

// apply carries out one command, if it chooses this node.
func (s *housekeeping) apply(c *trackerv1.Command) {
	if !trackerclient.Chosen(c.Nodes, s.cfg.NodeID, s.cfg.Region) {
		return
	}
	root, err := manifest.DigestFromBytes(c.Root)
	if err != nil {
		s.log.Warn("ignoring command with a bad root", "id", c.Id, "err", err)
		return
	}
	switch c.Action {
	case trackerv1.CommandAction_COMMAND_ACTION_PURGE:
		s.Purge(root)
	case trackerv1.CommandAction_COMMAND_ACTION_PREWARM:
		s.Prewarm(root, c.Name)
	default:
		s.log.Warn("ignoring command of an unknown action", "id", c.Id, "action", c.Action)
	}
}

// Purge drops every chunk of root from the node, memory and disk, and
// cancels its prewarm: the next request for the file fetches it anew.
// Chunks whose fetch began before the purge are handed to those who asked
// but not kept. The empty holdings reach the tracker with the next
// announcement.
func (s *housekeeping) Purge(root manifest.Digest) {
	s.prewarms.mu.Lock()
	if cancel := s.prewarms.m[root]; cancel != nil {
		cancel()
	}
	s.prewarms.mu.Unlock()
	// The manifest stays in memory (content-addressed, never stale), so
	// the node can still announce that it holds none of the chunks.
	s.localManifest(root)
	var held, mem int
	s.purges.purge(root, func() {
		held = s.store.Count(root)
		mem = s.dropFile(root)
	})
	s.metrics.commands.WithLabelValues("purge").Inc()
	s.log.Info("purged file", "root", root, "chunks_on_disk", held, "chunks_in_memory", mem)
}

// dropFile removes every chunk of root from the store and the memory
// cache, and reports how many were in memory. Memory is cleared on both
// sides of the disk: a read from the store that began before the drop
// may have cached its chunk again meanwhile.
func (s *housekeeping) dropFile(root manifest.Digest) int {
	n := s.hot.RemoveRoot(root)
	if err := s.store.DropFile(root); err != nil {
		s.log.Warn("drop file", "root", root, "err", err)
	}
	return n + s.hot.RemoveRoot(root)
}

// purgeLog remembers when each root was last purged, so a chunk whose
// fetch began before the purge is not kept after it: a fetch in flight
// must not bring the purged file back. Keeping (store, memory) and purging
// exclude each other, so no chunk slips in between the check and the drop.
type purgeLog struct {
	mu sync.RWMutex
	at map[manifest.Digest]time.Time
}

// purgeMemory is how long a purge is remembered: far longer than any
// chunk fetch takes.
const purgeMemory = 10 * time.Minute

// purge records a purge of root now and runs drop, with no chunk being
// kept meanwhile.
func (p *purgeLog) purge(root manifest.Digest, drop func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if p.at == nil {
		p.at = map[manifest.Digest]time.Time{}
	}
	for r, t := range p.at {
		if now.Sub(t) > purgeMemory {
			delete(p.at, r)
		}
	}
	p.at[root] = now
	drop()
}

// keep runs store unless root was purged since start (when the chunk was
// asked for), and reports whether it ran.
func (p *purgeLog) keep(root manifest.Digest, start time.Time, store func()) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if at, ok := p.at[root]; ok && !at.Before(start) {
		return false
	}
	store()
	return true
}

// prewarmWindow is how many chunks one prewarm step fetches: one Locate
// and a few streams, like a viewer's read-ahead.
const prewarmWindow = 16

// prewarmPasses bounds the passes over a file: chunks whose sources all
// failed in one pass are asked again in the next.
const prewarmPasses = 3

// Prewarm fetches every chunk of root the node does not hold into the
// store, in the background, the way misses are fetched: holders first,
// else through each chunk's home (a relay), else the origin. When every
// cachenode prewarms the same file at once, each chunk's home fetches it
// from the origin once and the others get it from the home, so the origin
// sends the file about once. A prewarm of a file already being prewarmed
// does nothing.
func (s *housekeeping) Prewarm(root manifest.Digest, name string) {
	if s.tracker == nil {
		s.log.Warn("cannot prewarm without a tracker", "root", root)
		return
	}
	ctx, cancel := context.WithCancel(s.life)
	s.prewarms.mu.Lock()
	if s.prewarms.m == nil {
		s.prewarms.m = map[manifest.Digest]context.CancelFunc{}
	}
	if s.prewarms.m[root] != nil {
		s.prewarms.mu.Unlock()
		cancel()
		return
	}
	s.prewarms.m[root] = cancel
	s.prewarms.mu.Unlock()
	done := func() {
		cancel()
		s.prewarms.mu.Lock()
		delete(s.prewarms.m, root)
		s.prewarms.mu.Unlock()
	}
	if !s.background(func() {
		defer done()
		s.prewarm(ctx, root, name)
	}) {
		done()
	}
}

func (s *housekeeping) prewarm(ctx context.Context, root manifest.Digest, name string) {
	start := time.Now()
	m, err := s.manifest(ctx, root, true)
	if err != nil {
		s.log.Warn("prewarm: no manifest", "root", root, "name", name, "err", err)
		return
	}
	s.log.Info("prewarming file", "root", root, "name", name, "chunks", m.ChunkCount(), "held", s.store.Count(root))
	var missing int
	for pass := 0; pass < prewarmPasses; pass++ {
		missing = 0
		for first := 0; first < m.ChunkCount() && ctx.Err() == nil; first += prewarmWindow {
			missing += s.prewarmWindow(ctx, m, first, min(first+prewarmWindow, m.ChunkCount()))
		}
		if missing == 0 || ctx.Err() != nil {
			break
		}
	}
	s.metrics.commands.WithLabelValues("prewarm").Inc()
	s.log.Info("prewarmed file", "root", root, "name", name, "chunks", m.ChunkCount(), "missing", missing,
		"cancelled", ctx.Err() != nil, "took", time.Since(start))
}

// prewarmWindow fetches the chunks first..end-1 the node misses, waits
// for them (and for those other requests are fetching) and returns how
// many did not arrive.
func (s *housekeeping) prewarmWindow(ctx context.Context, m *manifest.Manifest, first, end int) int {
	var owned []*want
	var waits []*chunkFlight
	now := time.Now()
	for idx := first; idx < end; idx++ {
		f, owner := s.fetcher.claim(chunkKey{m.Root, idx})
		if f == nil {
			continue // held
		}
		waits = append(waits, f)
		if owner {
			owned = append(owned, &want{idx: idx, f: f, start: now})
		}
	}
	if len(owned) > 0 {
		s.fetcher.fetchRun(ctx, m, owned, true)
	}
	missing := 0
	for _, f := range waits {
		select {
		case <-f.done:
			if f.err != nil {
				missing++
			}
		case <-ctx.Done():
			return len(waits)
		}
	}
	return missing
}
