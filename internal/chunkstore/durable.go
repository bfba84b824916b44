package chunkstore

import (
	"container/list"

	"github.com/p2pd/p2pd/internal/manifest"
)

// Durability. A chunk file is written and renamed into place without
// waiting for the disk: from then on Get serves it (from the page cache,
// or, after a crash that tore it, never: its trailer no longer matches).
// Making it durable is a syncer's job, off the Put path, in batches: it
// fsyncs the batch's files, then each of their directories once, and only
// then are the chunks acknowledged — they count in Held (what a node
// announces as its holdings) and OnChange fires for their files. So a
// crash loses at most chunks that were never acknowledged, and never
// leaves a partial chunk that can be served.
//
// Before, each Put fsynced its file and its directory while the fetch
// stream that brought the chunk waited for a store slot: on the
// benchmark machine that held a cold download at about two thirds of the
// rate without fsync (docs/benchmarks.md).

// maxUnsynced bounds the chunks written but not yet durable: a Put waits
// while that many are queued, so a disk slower than the network slows
// fetching down rather than the acknowledgements falling ever behind.
const maxUnsynced = 64

type unsynced struct {
	el   *list.Element
	path string
	dir  string
}

// queueSync hands the chunk file of el to the syncer, waiting while
// maxUnsynced are queued already.
func (s *Store) queueSync(el *list.Element, path, dir string) {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	for len(s.unsynced) >= maxUnsynced {
		s.synced.Wait()
	}
	s.unsynced = append(s.unsynced, unsynced{el: el, path: path, dir: dir})
	if !s.syncing {
		s.syncing = true
		go s.syncLoop()
	}
}

// syncLoop makes the queued chunks durable, batch after batch, until the
// queue is empty.
func (s *Store) syncLoop() {
	for {
		s.syncMu.Lock()
		batch := s.unsynced
		s.unsynced = nil
		if len(batch) == 0 {
			s.syncing = false
			s.synced.Broadcast()
			s.syncMu.Unlock()
			return
		}
		s.synced.Broadcast() // room in the queue
		s.syncMu.Unlock()

		dirs := map[string]bool{}
		for _, u := range batch {
			// A chunk evicted or dropped meanwhile has no file left:
			// nothing to make durable, nothing to acknowledge.
			if syncPath(u.path) == nil {
				dirs[u.dir] = true
			}
		}
		for d := range dirs {
			syncPath(d)
		}
		var roots []manifest.Digest
		s.mu.Lock()
		for _, u := range batch {
			if s.currentLocked(u.el) {
				e := u.el.Value.(*entry)
				e.unsynced = false
				roots = append(roots, e.root)
			}
		}
		s.mu.Unlock()
		s.notify(roots...)

		s.syncMu.Lock()
		s.syncedBatches++
		s.synced.Broadcast()
		s.syncMu.Unlock()
	}
}

// Sync waits until every chunk put before the call is durable and
// acknowledged (in Held, OnChange called).
func (s *Store) Sync() {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if !s.syncing {
		return
	}
	// The batch in progress may have been taken before our chunks were
	// queued: wait for the batch after it, or for the queue to drain.
	target := s.syncedBatches + 2
	for s.syncing && s.syncedBatches < target {
		s.synced.Wait()
	}
}
