package edgeserver

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/rangeio"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestMemoryCacheServesHotChunks(t *testing.T) {
	big := newFixtureFile(t, "films/big.mp4", bigSize, 1)
	e := newEnv(t, 1, []*fixtureFile{big}, func(c *Config) { c.MemoryCacheBytes = 64 << 20 })
	n := e.nodes[0]
	get := func(rng string, want []byte) {
		t.Helper()
		resp, body, err := e.do(t, "GET", "/films/big.mp4", "Range", rng)
		if err != nil || resp.StatusCode != 206 || !bytes.Equal(body, want) {
			t.Fatalf("%s: status %d err %v: wrong answer", rng, resp.StatusCode, err)
		}
	}
	// Chunk 1, then 0-1: only 0 is fetched the second time.
	get(fmt.Sprintf("bytes=%d-%d", testChunk, 2*testChunk-1), big.data[testChunk:2*testChunk])
	if _, req := n.stats(); req != 1 {
		t.Fatalf("node asked for %d chunks, want 1", req)
	}
	get(fmt.Sprintf("bytes=0-%d", 2*testChunk-1), big.data[:2*testChunk])
	if _, req := n.stats(); req != 2 {
		t.Fatalf("node asked for %d chunks in all, want 2 (the one not cached)", req)
	}
	// Both cached now: a hot request asks nothing of the node.
	fetches, _ := n.stats()
	get(fmt.Sprintf("bytes=10-%d", 2*testChunk-10), big.data[10:2*testChunk-9])
	if f, _ := n.stats(); f != fetches {
		t.Fatalf("hot request fetched from the node (%d fetches, was %d)", f, fetches)
	}
	if hits := counterValue(e.edge.metrics.memoryHits); hits != 3 {
		t.Fatalf("memory hits = %v, want 3", hits)
	}
}

func TestMemoryCacheHitsAreSafeUnderConcurrency(t *testing.T) {
	big := newFixtureFile(t, "films/big.mp4", bigSize, 2)
	e := newEnv(t, 2, []*fixtureFile{big}, func(c *Config) { c.MemoryCacheBytes = 64 << 20 })
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 10 {
				from := (g*7919 + i*104729) % (bigSize - 3*testChunk)
				to := from + 2*testChunk + g
				resp, body, err := e.do(t, "GET", "/films/big.mp4", "Range", fmt.Sprintf("bytes=%d-%d", from, to))
				if err != nil || resp.StatusCode != 206 || !bytes.Equal(body, big.data[from:to+1]) {
					t.Errorf("bytes=%d-%d: status %d err %v: wrong answer", from, to, resp.StatusCode, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// localNode is an in-process chunk source, as the single binary's
// cachenode is to its edge.
type localNode struct {
	f       *fixtureFile
	mu      sync.Mutex
	streams int
	missing map[int]bool
}

type localStream struct {
	n          *localNode
	next, last int
}

func (n *localNode) open(_ context.Context, root manifest.Digest, first, last int) (rangeio.ChunkStream, error) {
	if root != n.f.m.Root {
		return nil, status.Error(codes.NotFound, "unknown file")
	}
	n.mu.Lock()
	n.streams++
	n.mu.Unlock()
	return &localStream{n: n, next: first, last: last}, nil
}

func (s *localStream) Next(buf []byte) (int, []byte, error) {
	if s.next > s.last {
		return 0, nil, io.EOF
	}
	if s.n.missing[s.next] {
		return 0, nil, status.Errorf(codes.NotFound, "chunk %d not held", s.next)
	}
	s.next++
	// Shared bytes, as a memory cache hands them out.
	return s.next - 1, s.n.f.chunk(s.next - 1), nil
}

func (s *localStream) Close() {}

func TestLocalNode(t *testing.T) {
	big := newFixtureFile(t, "films/big.mp4", bigSize, 3)
	local := &localNode{f: big, missing: map[int]bool{5: true}}
	e := newEnv(t, 1, []*fixtureFile{big}, func(c *Config) {
		c.Local = local.open   // the manifest still comes from a ranked node
		c.MemoryCacheBytes = 0 // the local node keeps its own
	})
	resp, body, err := e.do(t, "GET", "/films/big.mp4", "Range", fmt.Sprintf("bytes=%d-%d", testChunk+5, 4*testChunk))
	if err != nil || resp.StatusCode != 206 || !bytes.Equal(body, big.data[testChunk+5:4*testChunk+1]) {
		t.Fatalf("status %d err %v: wrong answer", resp.StatusCode, err)
	}
	if _, req := e.nodes[0].stats(); req != 0 {
		t.Fatalf("the network node was asked for %d chunks; the local one should serve them", req)
	}
	if e.edge.hot != nil {
		t.Fatal("memory cache on in front of a local node")
	}
	// A chunk the local node neither holds nor fetches: 404, as over SPP.
	resp, _, _ = e.do(t, "GET", "/films/big.mp4", "Range", fmt.Sprintf("bytes=%d-%d", 5*testChunk, 5*testChunk+10))
	if resp.StatusCode != 404 {
		t.Fatalf("chunk the local node does not hold: status %d, want 404", resp.StatusCode)
	}
}

// An open-ended read asks for one chunk first, so its first byte waits for
// that chunk alone, then for windows doubling from two.
func TestOpenEndedReadStartsWithOneChunk(t *testing.T) {
	big := newFixtureFile(t, "films/big.mp4", bigSize, 4) // 11 chunks
	for _, rng := range []string{"", "bytes=0-"} {
		e := newEnv(t, 1, []*fixtureFile{big}, nil)
		var resp *http.Response
		var body []byte
		var err error
		if rng == "" {
			resp, body, err = e.do(t, "GET", "/films/big.mp4")
		} else {
			resp, body, err = e.do(t, "GET", "/films/big.mp4", "Range", rng)
		}
		if err != nil || (resp.StatusCode != 200 && resp.StatusCode != 206) || !bytes.Equal(body, big.data) {
			t.Fatalf("%q: status %d err %v", rng, resp.StatusCode, err)
		}
		// Windows [0] [1-2] [3-6] [7-10].
		if f, req := e.nodes[0].stats(); f != 4 || req != 11 {
			t.Fatalf("%q: %d fetches for %d chunks, want 4 for 11", rng, f, req)
		}
	}
}
