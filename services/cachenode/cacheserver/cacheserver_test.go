package cacheserver

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/spp/spptest"
	"github.com/p2pd/p2pd/services/tracker/trackertest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func chunkOf(data []byte, m *manifest.Manifest, idx int) []byte {
	off := m.ChunkOffset(idx)
	return data[off : off+int64(m.ChunkLen(idx))]
}

func TestMissIsFetchedStoredServedThenHit(t *testing.T) {
	cl := newCluster(t)
	media := t.TempDir()
	data, m := testFile(t, media, "films/a.mp4", 40*testChunkSize+1234)
	o := cl.startOrigin(media)
	cl.waitHolders(m.Root, 0, "cache-1", "origin")
	cn := cl.startCache("cache-1", t.TempDir(), Config{FetchMisses: true})
	ctx := t.Context()
	size := float64(len(data))

	// Any order, duplicates included, comes back in request order.
	order := []uint32{7, 3, 7, 0}
	got, err := cn.fetch(ctx, m, order, false)
	if err != nil {
		t.Fatal(err)
	}
	var want []byte
	for _, idx := range order {
		want = append(want, chunkOf(data, m, int(idx))...)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("out-of-order fetch: wrong bytes")
	}

	got, err = cn.fetch(ctx, m, allChunks(m), false)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("cold fetch: wrong bytes")
	}
	// Chunks are stored just after they are handed to the requester.
	trackertest.Eventually(t, "every chunk stored", func() bool { return cn.store.Count(m.Root) == m.ChunkCount() })
	fetched := metricValue(t, cn.reg, "p2pd_cachenode_fetched_bytes_total", "source", "origin")
	if fetched != size {
		t.Fatalf("fetched %v bytes from the origin, want each chunk once (%v)", fetched, size)
	}
	waitMetric(t, o.reg, size, "p2pd_origin_egress_bytes_total")

	// Second time round: all local, nothing fetched.
	got, err = cn.fetch(ctx, m, allChunks(m), false)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("hot fetch: wrong bytes")
	}
	if f := metricValue(t, cn.reg, "p2pd_cachenode_fetched_bytes_total", "source", "origin"); f != fetched {
		t.Fatalf("hot fetch fetched %v more bytes", f-fetched)
	}
	// Every byte requested was served, the hot fetch's from the store.
	total := float64(len(want)) + 2*size
	served := func(src string) float64 {
		return metricValue(t, cn.reg, "p2pd_cachenode_bytes_served_total", "source", src)
	}
	trackertest.Eventually(t, "served bytes counted", func() bool { return served("local")+served("origin") == total })
	if local := served("local"); local < size {
		t.Fatalf("served %v bytes from the store, want at least the hot fetch's %v", local, size)
	}
	if egress := metricValue(t, o.reg, "p2pd_origin_egress_bytes_total"); egress != size {
		t.Fatalf("origin sent %v bytes after the hot fetch, want still %v", egress, size)
	}
	if sb := metricValue(t, cn.reg, "p2pd_cachenode_store_bytes"); sb != size {
		t.Fatalf("store_bytes = %v, want %v", sb, size)
	}

	// The cachenode announced what it holds.
	for _, idx := range []int{0, m.ChunkCount() / 2, m.ChunkCount() - 1} {
		cl.waitHolders(m.Root, idx, "someone-else", "cache-1", "origin")
	}

	// Manifests by name come through the tracker's record.
	resp, err := cn.client.GetManifest(ctx, &sppv1.GetManifestRequest{File: &sppv1.GetManifestRequest_Name{Name: "films/a.mp4"}})
	if err != nil {
		t.Fatal(err)
	}
	gm, err := manifest.FromProto(resp.Manifest)
	if err != nil || !gm.Equal(m) || gm.Name != "films/a.mp4" || gm.ContentType != "video/mp4" {
		t.Fatalf("manifest by name: %v, %+v", err, resp.Manifest)
	}
}

func TestConcurrentColdRequestsShareOneFetch(t *testing.T) {
	cl := newCluster(t)
	dir := t.TempDir()
	data, m := testFile(t, dir, "b.bin", 10*testChunkSize)
	gate := make(chan struct{})
	src := cl.startSource("src", trackerv1.Role_ROLE_ORIGIN, data, m, spptest.Faults{Hold: gate})
	cl.waitHolders(m.Root, 5, "cache-1", "src")
	// The source holds every stream until all requests are waiting: a
	// stall timeout must not fire meanwhile.
	cn := cl.startCache("cache-1", t.TempDir(), Config{FetchMisses: true, StallTimeout: time.Minute})

	const n = 20
	var wg sync.WaitGroup
	results := make([][]byte, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { results[i], errs[i] = cn.fetch(t.Context(), m, []uint32{5}, false) })
	}
	trackertest.Eventually(t, "20 streams waiting on the cold chunk", func() bool {
		return metricValue(t, cn.reg, "p2pd_cachenode_active_streams") == n && src.FetchCalls() >= 1
	})
	close(gate)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || !bytes.Equal(results[i], chunkOf(data, m, 5)) {
			t.Fatalf("request %d: %v", i, errs[i])
		}
	}
	if f, c := src.FetchCalls(), src.SentChunks(); f != 1 || c != 1 {
		t.Fatalf("source saw %d fetches sending %d chunks, want 1 and 1", f, c)
	}
	// A request that came late (after the chunk was stored) counts as
	// local; either way none fetched it again.
	trackertest.Eventually(t, "served bytes counted", func() bool {
		return metricValue(t, cn.reg, "p2pd_cachenode_bytes_served_total", "source", "origin")+
			metricValue(t, cn.reg, "p2pd_cachenode_bytes_served_total", "source", "local") == n*float64(m.ChunkLen(5))
	})
	if f := metricValue(t, cn.reg, "p2pd_cachenode_fetched_bytes_total", "source", "origin"); f != float64(m.ChunkLen(5)) {
		t.Fatalf("fetched %v bytes, want the chunk once", f)
	}
}

func TestCorruptSourceIsRejected(t *testing.T) {
	cl := newCluster(t)
	dir := t.TempDir()
	data, m := testFile(t, dir, "c.bin", 16*testChunkSize)
	bad := cl.startSource("bad", trackerv1.Role_ROLE_CACHENODE, data, m, spptest.Faults{CorruptAll: true})
	good := cl.startSource("good", trackerv1.Role_ROLE_ORIGIN, data, m, spptest.Honest)
	cl.waitHolders(m.Root, 0, "cache-1", "bad", "good")

	// A chunk the tracker tells cache-1 to get from the bad source first.
	idx := -1
	for i := range m.ChunkCount() {
		if h := cl.holders(m.Root, i, "cache-1"); len(h) == 2 && h[0] == "bad" {
			idx = i
			break
		}
	}
	if idx < 0 {
		t.Fatal("the bad source ranks first for no chunk")
	}
	cn := cl.startCache("cache-1", t.TempDir(), Config{FetchMisses: true})
	got, err := cn.fetch(t.Context(), m, []uint32{uint32(idx)}, false)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, chunkOf(data, m, idx)) {
		t.Fatal("wrong bytes")
	}
	if bad.FetchCalls() != 1 || good.SentChunks() != 1 {
		t.Fatalf("bad source asked %d times, good one sent %d chunks; want 1 and 1", bad.FetchCalls(), good.SentChunks())
	}
	if df := metricValue(t, cn.reg, "p2pd_cachenode_digest_failures_total"); df != 1 {
		t.Fatalf("digest failures = %v, want 1", df)
	}
	if uf := metricValue(t, cn.reg, "p2pd_cachenode_upstream_failures_total", "source", "peer"); uf != 1 {
		t.Fatalf("upstream failures = %v, want 1", uf)
	}
	trackertest.Eventually(t, "the chunk stored", func() bool { return cn.store.Has(m.Root, idx) })
	if held, err := cn.store.Get(m.Root, idx, m.Digests[idx], nil); err != nil || !bytes.Equal(held, got) {
		t.Fatalf("stored chunk: %v", err)
	}

	// The whole file, whichever source ranks first for each chunk.
	got, err = cn.fetch(t.Context(), m, allChunks(m), false)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("whole file: %v", err)
	}
}

func TestRestartServesFromDisk(t *testing.T) {
	cl := newCluster(t)
	media := t.TempDir()
	data, m := testFile(t, media, "d.bin", 12*testChunkSize+5)
	o := cl.startOrigin(media)
	cl.waitHolders(m.Root, 0, "cache-1", "origin")
	dir := t.TempDir()
	cn := cl.startCache("cache-1", dir, Config{FetchMisses: true})
	if got, err := cn.fetch(t.Context(), m, allChunks(m), false); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("first fetch: %v", err)
	}
	trackertest.Eventually(t, "every chunk stored", func() bool { return cn.store.Count(m.Root) == m.ChunkCount() })
	cn.stop()
	o.stop() // whatever is served from now on comes from disk

	// A crash left a temp file and a chunk file torn after its rename.
	rootDir := filepath.Join(dir, "chunks", m.Root.String())
	tmp := filepath.Join(rootDir, "3.12345.tmp")
	if err := os.WriteFile(tmp, []byte("torn"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(rootDir, "4"), 1000); err != nil {
		t.Fatal(err)
	}

	cn2 := cl.startCache("cache-1", dir, Config{FetchMisses: true})
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Fatalf("temp file survived the restart: %v", err)
	}
	// Run announces the holdings found on disk.
	cl.waitHolders(m.Root, m.ChunkCount()-1, "someone-else", "cache-1")

	var idxs []uint32
	var want []byte
	for i := range m.ChunkCount() {
		if i != 4 {
			idxs = append(idxs, uint32(i))
			want = append(want, chunkOf(data, m, i)...)
		}
	}
	got, err := cn2.fetch(t.Context(), m, idxs, false)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("after restart: %v", err)
	}
	waitMetric(t, cn2.reg, float64(len(want)), "p2pd_cachenode_bytes_served_total", "source", "local")
	if f := metricValue(t, cn2.reg, "p2pd_cachenode_fetched_bytes_total", "source", "origin"); f != 0 {
		t.Fatalf("fetched %v bytes after restart", f)
	}
	// The torn chunk is detected, deleted and never served.
	_, err = cn2.fetch(t.Context(), m, []uint32{4}, true)
	if status.Code(err) != codes.NotFound {
		t.Fatalf("torn chunk: %v, want NotFound", err)
	}
	if df := metricValue(t, cn2.reg, "p2pd_cachenode_digest_failures_total"); df != 1 {
		t.Fatalf("digest failures = %v, want 1", df)
	}
	if cn2.store.Has(m.Root, 4) {
		t.Fatal("torn chunk still in the store")
	}
}

func TestPeerServesWhenOriginIsDown(t *testing.T) {
	cl := newCluster(t)
	media := t.TempDir()
	data, m := testFile(t, media, "e.bin", 9*testChunkSize)
	o := cl.startOrigin(media)
	cl.waitHolders(m.Root, 0, "cache-1", "origin")
	a := cl.startCache("cache-1", t.TempDir(), Config{FetchMisses: true})
	if _, err := a.fetch(t.Context(), m, allChunks(m), false); err != nil {
		t.Fatal(err)
	}
	for i := range m.ChunkCount() {
		cl.waitHolders(m.Root, i, "cache-2", "cache-1")
	}
	o.stop()
	b := cl.startCache("cache-2", t.TempDir(), Config{FetchMisses: true, StallTimeout: 2 * time.Second})
	got, err := b.fetch(t.Context(), m, allChunks(m), false)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fetch with the origin down: %v", err)
	}
	if f := metricValue(t, b.reg, "p2pd_cachenode_fetched_bytes_total", "source", "peer"); f != float64(len(data)) {
		t.Fatalf("fetched %v bytes from the peer, want %d", f, len(data))
	}
}

func TestDiskFullServesThrough(t *testing.T) {
	cl := newCluster(t)
	media := t.TempDir()
	data, m := testFile(t, media, "f.bin", 6*testChunkSize)
	o := cl.startOrigin(media)
	cl.waitHolders(m.Root, 0, "cache-1", "origin")
	dir := t.TempDir()
	cn := cl.startCache("cache-1", dir, Config{FetchMisses: true})
	// A file where the root's chunk directory belongs fails every write,
	// as a full disk would.
	if err := os.WriteFile(filepath.Join(dir, "chunks", m.Root.String()), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for round := 1; round <= 2; round++ {
		got, err := cn.fetch(t.Context(), m, allChunks(m), false)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("round %d: %v", round, err)
		}
		// Every store attempt failed; until they all have, a chunk's
		// flight is still open and a new request would share it.
		waitMetric(t, cn.reg, float64(round*m.ChunkCount()), "p2pd_cachenode_store_errors_total")
	}
	if n := cn.store.Count(m.Root); n != 0 {
		t.Fatalf("store holds %d chunks", n)
	}
	waitMetric(t, o.reg, float64(2*len(data)), "p2pd_origin_egress_bytes_total")
}

func TestLocalOnlyMiss(t *testing.T) {
	cl := newCluster(t)
	media := t.TempDir()
	data, m := testFile(t, media, "g.bin", 4*testChunkSize)
	cl.startOrigin(media)
	cl.waitHolders(m.Root, 0, "cache-1", "origin")
	cn := cl.startCache("cache-1", t.TempDir(), Config{FetchMisses: true})
	if _, err := cn.fetch(t.Context(), m, []uint32{0}, false); err != nil {
		t.Fatal(err)
	}
	trackertest.Eventually(t, "chunk 0 stored", func() bool { return cn.store.Has(m.Root, 0) })
	got, err := cn.fetch(t.Context(), m, []uint32{0, 1}, true)
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "chunk 1 ") {
		t.Fatalf("local-only miss: %v, want NotFound naming chunk 1", err)
	}
	if !bytes.Equal(got, chunkOf(data, m, 0)) {
		t.Fatal("held chunk before the miss not served")
	}
	if cn.store.Has(m.Root, 1) {
		t.Fatal("local-only request fetched the miss")
	}

	// A node that does not fetch serves only what it holds.
	nf := cl.startCache("cache-2", t.TempDir(), Config{FetchMisses: false})
	if _, err := nf.fetch(t.Context(), m, []uint32{0}, false); status.Code(err) != codes.NotFound {
		t.Fatalf("non-fetching node: %v, want NotFound", err)
	}
}

func TestEvictionsAreAnnounced(t *testing.T) {
	cl := newCluster(t)
	media := t.TempDir()
	data, m := testFile(t, media, "i.bin", 10*testChunkSize)
	cl.startOrigin(media)
	cl.waitHolders(m.Root, 0, "cache-1", "origin")
	cn := cl.startCacheLimit("cache-1", t.TempDir(), 4*testChunkSize, Config{FetchMisses: true})
	got, err := cn.fetch(t.Context(), m, allChunks(m), false)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fetch: %v", err)
	}
	// Each chunk was stored once, then kept or evicted.
	trackertest.Eventually(t, "every chunk stored", func() bool {
		return cn.store.Count(m.Root)+int(cn.store.Evictions()) == m.ChunkCount()
	})
	if b := cn.store.Bytes(); b > 4*testChunkSize {
		t.Fatalf("store holds %d bytes, over its limit", b)
	}
	evicted, kept := -1, -1
	for i := range m.ChunkCount() {
		if cn.store.Has(m.Root, i) {
			kept = i
		} else if evicted < 0 {
			evicted = i
		}
	}
	cl.waitHolders(m.Root, kept, "someone-else", "cache-1")
	trackertest.Eventually(t, "the eviction announced", func() bool {
		return !slices.Contains(cl.holders(m.Root, evicted, "someone-else"), "cache-1")
	})
	if ev := metricValue(t, cn.reg, "p2pd_cachenode_evictions_total"); ev != float64(m.ChunkCount()-4) {
		t.Fatalf("evictions = %v, want %d", ev, m.ChunkCount()-4)
	}
}

// Without a memory cache, chunks read from the store are sent with their
// buffer handed to gRPC (spp.SendBuffer), which may still be writing one
// when the next is read: each must reach every reader intact, however
// many streams share the pool of buffers.
func TestStoredChunksWithoutMemoryCache(t *testing.T) {
	cl := newCluster(t)
	media := t.TempDir()
	data, m := testFile(t, media, "nomem.bin", 48*testChunkSize+99)
	cl.startOrigin(media)
	cl.waitHolders(m.Root, 0, "cache-1", "origin")
	cn := cl.startCache("cache-1", t.TempDir(), Config{FetchMisses: true, MemoryCacheBytes: -1})
	if got, err := cn.fetch(t.Context(), m, allChunks(m), false); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("cold fetch: %v", err)
	}
	trackertest.Eventually(t, "every chunk stored", func() bool { return cn.store.Count(m.Root) == m.ChunkCount() })
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			got, err := cn.fetch(t.Context(), m, allChunks(m), true)
			if err == nil && !bytes.Equal(got, data) {
				err = errors.New("wrong bytes")
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("reading stored chunks: %v", err)
		}
	}
}
