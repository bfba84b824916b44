package edgeserver

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/p2pd/p2pd/internal/spp/spptest"
)

// getAll fetches path from the edge, n viewers at once, and reports every
// answer that is not the whole file byte for byte.
func getAll(t *testing.T, e *env, path string, want []byte, n int, rng func(i int) (string, []byte)) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			req, err := http.NewRequest("GET", e.http.URL+path, nil)
			if err != nil {
				errs <- err
				return
			}
			exp, code := want, http.StatusOK
			if rng != nil {
				var h string
				h, exp = rng(i)
				req.Header.Set("Range", h)
				code = http.StatusPartialContent
			}
			resp, err := e.http.Client().Do(req)
			if err != nil {
				errs <- fmt.Errorf("viewer %d: %w", i, err)
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if resp.StatusCode != code || err != nil || !bytes.Equal(body, exp) {
				errs <- fmt.Errorf("viewer %d: status %d, %d bytes, err %v: not the bytes asked for", i, resp.StatusCode, len(body), err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// A cachenode that is slow but alive (it sends one chunk at a time over
// all its streams, so most streams wait in its queue far longer than the
// stall timeout) serves every viewer: a stream queued behind the node's
// other streams is not stalled while the node delivers on them. Before,
// each queued stream "stalled", the only node was failed over from twice,
// and the viewers got 502s.
//
// The memory cache is off, so each viewer has a stream of its own and
// the node's queue is as long as the number of viewers.
func TestBusyNodeIsNotStalled(t *testing.T) {
	big := newFixtureFile(t, "films/big.mp4", bigSize, 1)
	e := newEnv(t, 1, []*fixtureFile{big}, func(c *Config) {
		// 48 viewers queue for 10 ms chunks: a stream waits about
		// 0.5 s per chunk, twice the stall timeout, however fast the
		// machine is; the node never goes quiet for 0.25 s while it has
		// work unless the machine stops it.
		c.StallTimeout = 250 * time.Millisecond
	})
	e.nodes[0].SetFaults(spptest.Faults{Pace: 10 * time.Millisecond})
	chunks := big.m.ChunkCount()
	getAll(t, e, "/films/big.mp4", nil, 48, func(i int) (string, []byte) {
		// Two chunks each, at places that differ between viewers.
		first := i % (chunks - 1)
		off, end := big.m.ChunkOffset(first), big.m.ChunkOffset(first+1)+int64(big.m.ChunkLen(first+1))
		return fmt.Sprintf("bytes=%d-%d", off, end-1), big.data[off:end]
	})
	if n := counterValue(e.edge.metrics.failovers); n != 0 {
		t.Errorf("%v failovers from a node that was busy, not stalled", n)
	}
}

// A node that accepts streams and sends nothing on any of them is still
// failed over from, though it was paced like a busy one: the viewers'
// streams move to the other node.
func TestSilentNodeIsFailedOver(t *testing.T) {
	big := newFixtureFile(t, "films/big.mp4", bigSize, 1)
	e := newEnv(t, 2, []*fixtureFile{big}, func(c *Config) { c.StallTimeout = 250 * time.Millisecond })
	home := e.ranking(t, big)[0][0]
	home.SetFaults(spptest.Faults{Pace: 10 * time.Millisecond, Stall: map[int]bool{0: true}})
	getAll(t, e, "/films/big.mp4", big.data, 8, nil)
	if n := counterValue(e.edge.metrics.failovers); n < 1 {
		t.Errorf("failovers %v, want >= 1", n)
	}
}

// Viewers starting one cold file at once cost one fetch per chunk: a
// viewer that misses a chunk another one is fetching waits for that
// fetch, and one that comes later finds it in the memory cache.
func TestConcurrentMissesShareOneFetch(t *testing.T) {
	big := newFixtureFile(t, "films/big.mp4", bigSize, 1)
	e := newEnv(t, 1, []*fixtureFile{big}, func(c *Config) { c.MemoryCacheBytes = 64 << 20 })
	// A busy node, so the viewers' misses overlap.
	e.nodes[0].SetFaults(spptest.Faults{Pace: 2 * time.Millisecond})
	getAll(t, e, "/films/big.mp4", big.data, 64, nil)
	if _, asked := e.nodes[0].stats(); asked != big.m.ChunkCount() {
		t.Errorf("the node was asked for %d chunks, want each of the %d once", asked, big.m.ChunkCount())
	}
	if n := counterValue(e.edge.metrics.sharedMisses); n < 1 {
		t.Errorf("no viewer joined another's fetch (%v)", n)
	}
	if n := e.edge.bufs.InUse(); n != 0 {
		t.Errorf("%d chunk buffers in use after every viewer finished", n)
	}
}

// Viewers that leave while their shared fetch is in flight stop it; the
// chunks they left are fetched again for the next viewer, byte-exact.
func TestAbandonedSharedFetch(t *testing.T) {
	big := newFixtureFile(t, "films/big.mp4", bigSize, 1)
	e := newEnv(t, 1, []*fixtureFile{big}, func(c *Config) { c.MemoryCacheBytes = 64 << 20 })
	e.nodes[0].SetFaults(spptest.Faults{Stall: map[int]bool{2: true}})
	for range 4 {
		req, err := http.NewRequestWithContext(t.Context(), "GET", e.http.URL+"/films/big.mp4", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := e.http.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		// Read the first chunk, then leave while chunk 2 hangs.
		if _, err := io.ReadFull(resp.Body, make([]byte, testChunk)); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	e.nodes[0].SetFaults(spptest.Honest)
	resp, body, err := e.do(t, "GET", "/films/big.mp4")
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, big.data) {
		t.Fatalf("status %d, err %v: not the file", resp.StatusCode, err)
	}
}
