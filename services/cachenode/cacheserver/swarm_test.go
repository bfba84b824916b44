package cacheserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/bitmap"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/netem"
	"github.com/p2pd/p2pd/internal/spp"
	"github.com/p2pd/p2pd/internal/spp/spptest"
	"github.com/p2pd/p2pd/services/tracker/trackertest"
)

// startLinked is startSource behind an emulated link: everything the
// source sends goes through link.
func (c *cluster) startLinked(id string, role trackerv1.Role, data []byte, m *manifest.Manifest, link *netem.Link) *spptest.Node {
	c.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	n := spptest.Serve(c.t, netem.Listen(ln, link), spptest.Honest, &spptest.File{M: m, Data: data})
	c.join(&trackerv1.Node{Id: id, Role: role, GrpcAddr: n.Addr}, fullHaves(m))
	return n
}

// fullHaves announces every chunk of m.
func fullHaves(m *manifest.Manifest) func() []*trackerv1.Have {
	full := bitmap.New(m.ChunkCount())
	for i := range m.ChunkCount() {
		full.Set(i)
	}
	have := &trackerv1.Have{Root: m.Root[:], ChunkCount: uint32(m.ChunkCount()), Bitmap: full.Encode()}
	return func() []*trackerv1.Have { return []*trackerv1.Have{have} }
}

func TestFastSourceTakesMostBytes(t *testing.T) {
	cl := newCluster(t)
	dir := t.TempDir()
	data, m := testFile(t, dir, "fs.bin", 64*testChunkSize)
	// Both are peers holding the whole file; one sends 32 times faster.
	fast := &netem.Link{Rate: 8 << 20}
	slow := &netem.Link{Rate: 256 << 10}
	cl.startLinked("fast", trackerv1.Role_ROLE_CACHENODE, data, m, fast)
	cl.startLinked("slow", trackerv1.Role_ROLE_CACHENODE, data, m, slow)
	cl.waitHolders(m.Root, m.ChunkCount()-1, "cache-1", "fast", "slow")
	cn := cl.startCache("cache-1", t.TempDir(), Config{FetchMisses: true, Prefetch: -1})

	got, err := cn.fetch(t.Context(), m, allChunks(m), false)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fetch: %v", err)
	}
	f, s := fast.Sent(), slow.Sent()
	t.Logf("fast source sent %d bytes, slow %d (file %d)", f, s, len(data))
	if f < int64(len(data))*3/4 || s*4 > f {
		t.Fatalf("fast source sent %d bytes, slow %d: want most from the fast one", f, s)
	}
	if n := metricValue(t, cn.reg, "p2pd_cachenode_fetched_bytes_total", "source", "peer"); n != float64(len(data)) {
		t.Fatalf("fetched %v bytes, want every chunk once (%d)", n, len(data))
	}
}

func TestSpreadsOverEqualSources(t *testing.T) {
	cl := newCluster(t)
	dir := t.TempDir()
	data, m := testFile(t, dir, "eq.bin", 64*testChunkSize)
	var links [3]*netem.Link
	var ids []string
	for i := range links {
		links[i] = &netem.Link{Rate: 2 << 20}
		ids = append(ids, fmt.Sprintf("peer-%d", i))
		cl.startLinked(ids[i], trackerv1.Role_ROLE_CACHENODE, data, m, links[i])
	}
	cl.waitHolders(m.Root, m.ChunkCount()-1, "cache-1", ids...)
	cn := cl.startCache("cache-1", t.TempDir(), Config{FetchMisses: true, Prefetch: -1})
	got, err := cn.fetch(t.Context(), m, allChunks(m), false)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fetch: %v", err)
	}
	// Three sources of the same speed: every one carries a part and none
	// most of it. (Shares vary with the machine's load: measured rates
	// steer the split, so an exact third is not asked for.)
	for i, l := range links {
		t.Logf("%s sent %d bytes", ids[i], l.Sent())
		if l.Sent() == 0 || l.Sent() > int64(len(data))*3/4 {
			t.Errorf("%s sent %d of %d bytes: the fetch did not spread", ids[i], l.Sent(), len(data))
		}
	}
}

func TestStalledSourceIsAbandoned(t *testing.T) {
	t.Run("another peer finishes its chunks", func(t *testing.T) {
		cl := newCluster(t)
		dir := t.TempDir()
		data, m := testFile(t, dir, "st.bin", 32*testChunkSize)
		stall := &netem.Link{StallAfter: 5 * testChunkSize / 2}
		cl.startLinked("staller", trackerv1.Role_ROLE_CACHENODE, data, m, stall)
		cl.startLinked("good", trackerv1.Role_ROLE_CACHENODE, data, m, &netem.Link{})
		cl.waitHolders(m.Root, m.ChunkCount()-1, "cache-1", "staller", "good")
		// A stall timeout long past the test: the end game alone must
		// route around the stalled peer.
		cn := cl.startCache("cache-1", t.TempDir(), Config{FetchMisses: true, Prefetch: -1, StallTimeout: time.Hour})
		got, err := cn.fetch(t.Context(), m, allChunks(m), false)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("fetch: %v", err)
		}
		if n := metricValue(t, cn.reg, "p2pd_cachenode_endgame_requests_total"); n == 0 {
			t.Fatal("no end-game request: the stalled chunks were not asked elsewhere")
		}
	})

	t.Run("the origin takes over after the stall timeout", func(t *testing.T) {
		cl := newCluster(t)
		media := t.TempDir()
		data, m := testFile(t, media, "st2.bin", 32*testChunkSize)
		o := cl.startOrigin(media)
		// The only peer stalls two and a half chunks in.
		stall := &netem.Link{StallAfter: 5 * testChunkSize / 2}
		cl.startLinked("staller", trackerv1.Role_ROLE_CACHENODE, data, m, stall)
		cl.waitHolders(m.Root, m.ChunkCount()-1, "cache-1", "staller", "origin")
		cn := cl.startCache("cache-1", t.TempDir(), Config{FetchMisses: true, Prefetch: -1, StallTimeout: 300 * time.Millisecond})
		got, err := cn.fetch(t.Context(), m, allChunks(m), false)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("fetch: %v", err)
		}
		if n := metricValue(t, cn.reg, "p2pd_cachenode_upstream_failures_total", "source", "peer"); n == 0 {
			t.Fatal("the stall was not counted as a failure")
		}
		// The peer delivered a part before stalling (its first chunk at
		// least: the end game may bring its second from the origin
		// first), the origin the rest, each chunk once.
		peer := metricValue(t, cn.reg, "p2pd_cachenode_fetched_bytes_total", "source", "peer")
		origin := metricValue(t, cn.reg, "p2pd_cachenode_fetched_bytes_total", "source", "origin")
		if peer < testChunkSize || peer+origin != float64(len(data)) {
			t.Fatalf("fetched %v bytes from the peer and %v from the origin, want >= 1 chunk and %d in all", peer, origin, len(data))
		}
		waitMetric(t, o.reg, origin, "p2pd_origin_egress_bytes_total")
	})
}

func TestClusterFetchesEachChunkOnceFromTheOrigin(t *testing.T) {
	cl := newCluster(t)
	media := t.TempDir()
	data, m := testFile(t, media, "co.bin", 96*testChunkSize)
	o := cl.startOrigin(media)
	cl.waitHolders(m.Root, 0, "x", "origin")
	const caches, viewers = 4, 3
	var cns []*cache
	for i := range caches {
		cns = append(cns, cl.startCache(fmt.Sprintf("cache-%d", i), t.TempDir(), Config{FetchMisses: true}))
	}
	trackertest.Eventually(t, "every cachenode registered", func() bool {
		resp, err := cl.tracker.ListNodes(context.Background(), &trackerv1.ListNodesRequest{})
		return err == nil && len(resp.Nodes) == caches+1
	})
	var wg sync.WaitGroup
	errs := make(chan error, caches*viewers)
	for _, cn := range cns {
		for range viewers {
			wg.Go(func() {
				got, err := cn.fetch(t.Context(), m, allChunks(m), false)
				if err == nil && !bytes.Equal(got, data) {
					err = errors.New("wrong bytes")
				}
				errs <- err
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	egress := metricValue(t, o.reg, "p2pd_origin_egress_bytes_total")
	var peer float64
	for _, cn := range cns {
		peer += metricValue(t, cn.reg, "p2pd_cachenode_fetched_bytes_total", "source", "peer")
	}
	t.Logf("origin egress %v bytes for a %d-byte file; %v bytes between peers", egress, len(data), peer)
	if egress > 1.1*float64(len(data)) {
		t.Fatalf("origin sent %v bytes for %d caches x %d viewers of a %d-byte file; want <= 1.1x", egress, caches, viewers, len(data))
	}
}

func TestPrefetch(t *testing.T) {
	cl := newCluster(t)
	dir := t.TempDir()
	data, m := testFile(t, dir, "pf.bin", 64*testChunkSize)
	// The source holds the streams asking for a chunk past HoldFrom until
	// released.
	release := make(chan struct{})
	src := cl.startSource("src", trackerv1.Role_ROLE_ORIGIN, data, m, spptest.Faults{Hold: release, HoldFrom: 1 << 30})
	cl.waitHolders(m.Root, 0, "cache-1", "src")
	cn := cl.startCache("cache-1", t.TempDir(), Config{FetchMisses: true, Prefetch: 8})

	t.Run("a sequential request reads ahead", func(t *testing.T) {
		got, err := cn.fetch(t.Context(), m, span32(0, 4), false)
		if err != nil || !bytes.Equal(got, data[:4*testChunkSize]) {
			t.Fatalf("fetch: %v", err)
		}
		trackertest.Eventually(t, "chunks 4-11 prefetched", func() bool {
			for i := 4; i < 12; i++ {
				if !cn.store.Has(m.Root, i) {
					return false
				}
			}
			return true
		})
		if cn.store.Has(m.Root, 12) {
			t.Fatal("read ahead past the window")
		}
		if n := metricValue(t, cn.reg, "p2pd_cachenode_prefetched_chunks_total"); n != 8 {
			t.Fatalf("prefetched %v chunks, want 8", n)
		}
	})

	t.Run("a random request does not", func(t *testing.T) {
		before := src.SentChunks()
		if _, err := cn.fetch(t.Context(), m, []uint32{30, 31}, false); err != nil {
			t.Fatal(err)
		}
		if got := src.SentChunks() - before; got != 2 {
			t.Fatalf("source sent %d chunks for a 2-chunk request", got)
		}
	})

	t.Run("a request cut short cancels its read-ahead", func(t *testing.T) {
		// The request's first upstream runs come through; its later ones
		// and the read-ahead wait at the gate, so the request is still
		// going when the viewer leaves.
		src.SetFaults(spptest.Faults{Hold: release, HoldFrom: 44})
		ctx, cancel := context.WithCancel(t.Context())
		r, err := spp.Open(ctx, cn.client, m, &sppv1.FetchRequest{Root: m.Root[:], Chunks: span32(36, 52)}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := r.Next(nil); err != nil {
			t.Fatal(err)
		}
		trackertest.Eventually(t, "read-ahead waiting at the source", func() bool { return cn.srv.fetcher.prefetchN.Load() == 8 })
		// Another request joins a chunk the read-ahead is fetching.
		joined := make(chan error, 1)
		go func() {
			got, err := cn.fetch(t.Context(), m, []uint32{54}, false)
			if err == nil && !bytes.Equal(got, chunkOf(data, m, 54)) {
				err = errors.New("wrong bytes")
			}
			joined <- err
		}()
		trackertest.Eventually(t, "second request waiting", func() bool { return metricValue(t, cn.reg, "p2pd_cachenode_active_streams") == 2 })
		cancel() // the viewer seeks away
		r.Close()
		trackertest.Eventually(t, "read-ahead cancelled", func() bool { return cn.srv.fetcher.prefetchN.Load() == 0 })
		// The joined request fetches its chunk itself once released.
		close(release)
		if err := <-joined; err != nil {
			t.Fatalf("request that joined the cancelled read-ahead: %v", err)
		}
		for i := 52; i < 60; i++ {
			if i != 54 && cn.store.Has(m.Root, i) {
				t.Fatalf("chunk %d stored after the read-ahead was cancelled", i)
			}
		}
	})
}

func span32(from, to int) []uint32 {
	var out []uint32
	for i := from; i < to; i++ {
		out = append(out, uint32(i))
	}
	return out
}

func TestLocalStream(t *testing.T) {
	for _, memory := range []int64{0, -1} {
		t.Run(fmt.Sprintf("memory cache %d", memory), func(t *testing.T) {
			cl := newCluster(t)
			media := t.TempDir()
			data, m := testFile(t, media, "ls.bin", 20*testChunkSize+7)
			cl.startOrigin(media)
			cl.waitHolders(m.Root, 0, "cache-1", "origin")
			cn := cl.startCache("cache-1", t.TempDir(), Config{FetchMisses: true, MemoryCacheBytes: memory})
			for round := range 2 { // cold, then hot
				ls, err := cn.srv.Stream(t.Context(), m.Root, 2, m.ChunkCount()-1)
				if err != nil {
					t.Fatal(err)
				}
				var got []byte
				buf := make([]byte, testChunkSize)
				for {
					idx, chunk, err := ls.Next(buf)
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(chunk, chunkOf(data, m, idx)) {
						t.Fatalf("round %d chunk %d: wrong bytes", round, idx)
					}
					got = append(got, chunk...)
				}
				ls.Close()
				if !bytes.Equal(got, data[2*testChunkSize:]) {
					t.Fatalf("round %d: %d bytes, want %d", round, len(got), len(data)-2*testChunkSize)
				}
				trackertest.Eventually(t, "chunks stored", func() bool { return cn.store.Count(m.Root) == m.ChunkCount()-2 })
			}
			if fetched := metricValue(t, cn.reg, "p2pd_cachenode_fetched_bytes_total", "source", "origin"); fetched != float64(len(data)-2*testChunkSize) {
				t.Fatalf("fetched %v bytes: the hot round fetched again", fetched)
			}
			if n := metricValue(t, cn.reg, "p2pd_cachenode_active_streams"); n != 0 {
				t.Fatalf("%v streams still counted active", n)
			}
		})
	}
}

func TestLoneSourceThatStalledIsAskedAgain(t *testing.T) {
	cl := newCluster(t)
	dir := t.TempDir()
	data, m := testFile(t, dir, "so.bin", 4*testChunkSize)
	// The source holds its first stream until the requester gives up,
	// then serves normally: a node too busy to send for a moment.
	src := cl.startSource("only", trackerv1.Role_ROLE_ORIGIN, data, m, spptest.Faults{StallOnce: map[int]bool{0: true}})
	cl.waitHolders(m.Root, 0, "cache-1", "only")
	cn := cl.startCache("cache-1", t.TempDir(), Config{FetchMisses: true, Prefetch: -1, StallTimeout: time.Second})
	got, err := cn.fetch(t.Context(), m, allChunks(m), false)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fetch: %v", err)
	}
	if f := src.FetchCalls(); f != 2 {
		t.Fatalf("source asked %d times, want 2 (the stall, then again)", f)
	}
	if n := metricValue(t, cn.reg, "p2pd_cachenode_upstream_failures_total", "source", "origin"); n != 1 {
		t.Fatalf("upstream failures = %v, want 1", n)
	}
}
