package cacheserver

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/spp/spptest"
	"github.com/p2pd/p2pd/internal/testclock"
)

// memoryCluster is a tracker, a peer cachenode that holds a 12-chunk
// file but starts silent (a stopped process: it takes calls and answers
// none), an origin that serves it, and the cachenode under test, whose
// memory of failed sources runs on a hand clock.
func memoryCluster(t *testing.T) (f *spptest.File, peer, origin *spptest.Node, clock *testclock.Clock, cn *cache) {
	cl := newCluster(t)
	data := make([]byte, 12*testChunkSize)
	rand.NewChaCha8([32]byte{1}).Read(data)
	f = spptest.NewFile(t, "mem.bin", data, testChunkSize)
	peer = spptest.Start(t, spptest.Silent, f)
	origin = spptest.Start(t, spptest.Honest, f)
	cl.join(&trackerv1.Node{Id: "peer", Role: trackerv1.Role_ROLE_CACHENODE, GrpcAddr: peer.Addr}, fullHaves(f.M))
	cl.join(&trackerv1.Node{Id: "origin", Role: trackerv1.Role_ROLE_ORIGIN, GrpcAddr: origin.Addr}, fullHaves(f.M))
	cl.waitHolders(f.M.Root, f.M.ChunkCount()-1, "cache-1", "peer", "origin")
	clock = testclock.New(time.Unix(1e9, 0))
	// A stall timeout far past the test: only the hedge (a source that
	// sends nothing at all) and the memory can route around the peer.
	cn = cl.startCache("cache-1", t.TempDir(), Config{FetchMisses: true, Prefetch: -1, StallTimeout: time.Hour, Now: clock.Now})
	return f, peer, origin, clock, cn
}

// request fetches chunks [from, to) through cn and fails the test unless
// they are byte-exact.
func request(t *testing.T, cn *cache, f *spptest.File, name string, from, to int) {
	t.Helper()
	got, err := cn.fetch(t.Context(), f.M, span32(from, to), false)
	if want := f.Data[from*testChunkSize : to*testChunkSize]; err != nil || !bytes.Equal(got, want) {
		t.Fatalf("request %s: %v, byte-exact %v", name, err, bytes.Equal(got, want))
	}
}

// TestFailureMemoryAcrossRequests: the cachenode's memory of failed
// sources (Server.health) outlives the request that saw the failure. A
// peer holder that keeps silent in request A is hedged past to the
// origin; request B, for other chunks, does not ask it at all while it is
// on probation; once the probation is over (a hand clock: nothing here
// depends on how long anything takes) request C asks it first again, and
// its success clears the memory.
func TestFailureMemoryAcrossRequests(t *testing.T) {
	f, peer, origin, clock, cn := memoryCluster(t)
	// The manifest is known: this is about chunk fetches.
	if err := cn.store.PutManifest(f.M); err != nil {
		t.Fatal(err)
	}

	// A: the peer is asked first (a holding peer comes before the
	// origin), sends nothing, and the origin is asked as well.
	request(t, cn, f, "A", 0, 4)
	if n := peer.FetchCalls(); n != 1 {
		t.Fatalf("request A asked the peer %d times, want once, first", n)
	}
	if n := metricValue(t, cn.reg, "p2pd_cachenode_hedged_chunks_total"); n == 0 {
		t.Fatal("request A: no chunk hedged past the silent peer")
	}
	if !cn.srv.health.Probation("peer") {
		t.Fatal("the silent peer is not remembered as failed")
	}
	originCalls := origin.FetchCalls()

	// B: the peer is on probation, and the origin is left: B goes to the
	// origin at once, without asking the peer.
	request(t, cn, f, "B", 4, 8)
	if n := peer.FetchCalls(); n != 1 {
		t.Fatalf("request B asked the peer on probation (%d calls in all)", n)
	}
	if origin.FetchCalls() == originCalls {
		t.Fatal("request B did not go to the origin")
	}

	// C: after the probation (2 s for a first failure; the clock moves a
	// minute) the peer, answering again, is asked first and delivers. The
	// origin falls silent now, so the peer is the only way the request
	// can complete, however the machine's load times the hedge.
	peer.SetFaults(spptest.Honest)
	origin.SetFaults(spptest.Silent)
	clock.Advance(time.Minute)
	peerBytes := metricValue(t, cn.reg, "p2pd_cachenode_fetched_bytes_total", "source", "peer")
	request(t, cn, f, "C", 8, 12)
	if n := peer.FetchCalls(); n != 2 {
		t.Fatalf("request C asked the peer %d times in all, want 2: it was not probed back", n)
	}
	if got := metricValue(t, cn.reg, "p2pd_cachenode_fetched_bytes_total", "source", "peer") - peerBytes; got != 4*testChunkSize {
		t.Fatalf("request C fetched %v bytes from the peer, want its 4 chunks", got)
	}
	if cn.srv.health.Probation("peer") {
		t.Fatal("the peer's success did not clear its failure")
	}
}

// TestSilentManifestHolderIsRemembered: a peer that keeps silent when
// asked for the manifest (the cachenode's first fetch of a file) is
// hedged past to the origin and remembered, so the chunk fetches of the
// same request do not wait on it: it is never asked for a chunk, and
// nothing needs hedging.
func TestSilentManifestHolderIsRemembered(t *testing.T) {
	f, peer, origin, _, cn := memoryCluster(t)
	request(t, cn, f, "A", 0, 12)
	if peer.ManifestCalls() != 1 || origin.ManifestCalls() != 1 {
		t.Fatalf("manifest asked of the peer %d times, of the origin %d; want once each", peer.ManifestCalls(), origin.ManifestCalls())
	}
	if n := peer.FetchCalls(); n != 0 {
		t.Fatalf("the silent manifest holder was asked for chunks %d times", n)
	}
	if n := metricValue(t, cn.reg, "p2pd_cachenode_hedged_chunks_total"); n != 0 {
		t.Fatalf("%v chunks hedged: the chunk fetches waited on the peer", n)
	}
}
