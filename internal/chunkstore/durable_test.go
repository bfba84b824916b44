package chunkstore

import (
	"bytes"
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/p2pd/p2pd/internal/manifest"
)

// Chunks put faster than the syncer makes them durable (more than
// maxUnsynced at once, from several goroutines) are all served at once
// and acknowledged once Sync returns: in Held, with OnChange called.
func TestPutsAreSyncedInBatches(t *testing.T) {
	s := open(t, t.TempDir(), 1<<30)
	root := rootOf(20)
	var changes atomic.Int64
	s.OnChange(func(r manifest.Digest) {
		if r == root {
			changes.Add(1)
		}
	})
	const n, size = 3 * maxUnsynced, 4096
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := g; i < n; i += 4 {
				data := chunk(20, i, size)
				if err := s.Put(root, i, data, sha256.Sum256(data)); err != nil {
					t.Error(err)
					return
				}
				// Served at once, durable or not.
				if got, err := s.Get(root, i, sha256.Sum256(data), nil); err != nil || !bytes.Equal(got, data) {
					t.Errorf("chunk %d right after Put: %v", i, err)
				}
			}
		})
	}
	wg.Wait()
	s.Sync()
	if held := s.Held(root, n); held.Count() != n {
		t.Fatalf("Held after Sync: %d of %d chunks", held.Count(), n)
	}
	if changes.Load() == 0 {
		t.Fatal("no OnChange for the chunks made durable")
	}
	s.syncMu.Lock()
	queued := len(s.unsynced)
	s.syncMu.Unlock()
	if queued != 0 {
		t.Fatalf("%d chunks still queued after Sync", queued)
	}
	// Sync with nothing queued returns at once.
	s.Sync()
}
