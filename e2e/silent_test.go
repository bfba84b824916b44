package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// silentBound is the bound on what a silent peer may cost a
// viewer (issue 12: "a silent peer costs under 2 s"). What it costs by
// design (docs/reliability.md, "A silent peer"): one hedge, 0.5 s, before
// the next source is asked for the manifest, and nothing more for the
// chunks, since the silent source is then remembered as failed; about
// 0.5–0.8 s measured on the 2-core test machine. The margin up to 2 s is
// for a machine busy with other test runs: the one fixed wait is the
// hedge, everything else is loopback transfers and process scheduling.
const silentBound = 2 * time.Second

// TestP2PDSilentManifestHolder: the one cache that holds a file (and its
// manifest) is frozen with SIGSTOP — still registered, its port accepting
// connections, answering nothing — when a new cache's first viewer asks
// for the file. The new cache moves past the silent holder (its manifest
// fetch asks the next source after a short wait, and remembers the silent
// one, so its chunk fetches go elsewhere at once) to the server, and the
// viewer gets every byte, never a 502, and waits under silentBound.
func TestP2PDSilentManifestHolder(t *testing.T) {
	media := t.TempDir()
	data := randomFile(t, media, "held.mp4", 6<<20+17)
	hosts := []string{"127.0.0.65", "127.0.0.66", "127.0.0.67"}
	port := samePort(t, hosts...)
	server := startP2PD(t, "server", hosts[0], port, "-i", "-p", media)
	serverAddr := net.JoinHostPort(hosts[0], port)
	holder := startP2PD(t, "holder", hosts[1], port, "-c", t.TempDir(), "-n", "-N", "-S", serverAddr)
	waitP2PDServes(t, holder.url("held.mp4"), "")
	if resp, body := viewerGet(t, holder.url("held.mp4"), "", nil); resp.StatusCode != 200 || sum(body) != sum(data) {
		t.Fatalf("through the holder: %d, byte-exact %v", resp.StatusCode, sum(body) == sum(data))
	}
	fresh := startP2PD(t, "fresh", hosts[2], port, "-c", t.TempDir(), "-n", "-N", "-S", serverAddr)
	eventually(t, 30*time.Second, "the tracker has the origin and both caches", func() error {
		if n := metric(t, server.ops(), "p2pd_tracker_nodes", nil); n < 3 {
			return fmt.Errorf("%v nodes", n)
		}
		return nil
	})

	// Freeze the holder within its lease: the tracker still names it.
	if err := holder.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.cmd.Process.Signal(syscall.SIGCONT) })
	v := timedGet(t, fresh.url("held.mp4"), nil)
	t.Logf("whole file through the new cache with its holder silent: first byte after %v, longest wait %v, all in %v",
		v.firstByte.Round(time.Millisecond), v.longest.Round(time.Millisecond), v.took.Round(time.Millisecond))
	if v.status != 200 || sum(v.body) != sum(data) {
		t.Fatalf("through a new cache with the holder silent: status %d, %d bytes, byte-exact %v, err %v", v.status, len(v.body), sum(v.body) == sum(data), v.err)
	}
	if v.longest >= silentBound {
		t.Errorf("the viewer waited %v for data, want under %v", v.longest, silentBound)
	}
	// A range request as a player seeking would send: served too, the
	// silent holder remembered.
	v = timedGet(t, fresh.url("held.mp4"), map[string]string{"Range": "bytes=5000000-5000099"})
	t.Logf("a range: longest wait %v", v.longest.Round(time.Millisecond))
	if v.status != 206 || string(v.body) != string(data[5000000:5000100]) {
		t.Fatalf("range through the new cache: %d, err %v", v.status, v.err)
	}
	if v.longest >= silentBound {
		t.Errorf("the range waited %v for data, want under %v", v.longest, silentBound)
	}
}

// TestSilentHolderServices is the same in the separate services: the one
// cachenode that holds a file is frozen with SIGSTOP before the edge or
// the other cachenode ever asked for it. The edge's manifest fetch hedges
// past the silent holder (to the other cachenode, which hedges past it in
// turn to the origin) and remembers it, so the chunks come through the
// other cachenode; the viewer gets every byte, never a 502, and waits
// under silentBound (see there). A range request follows at once.
func TestSilentHolderServices(t *testing.T) {
	media := t.TempDir()
	data := randomFile(t, media, "held.mp4", 6<<20+17)
	c := startCluster(t, media, clusterOpts{caches: 2})
	conn, err := grpc.NewClient(c.trackerAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	x := trackerv1.NewTrackerServiceClient(conn)
	var f *trackerv1.File
	eventually(t, 30*time.Second, "held.mp4 published", func() error {
		resp, err := x.GetFile(t.Context(), &trackerv1.GetFileRequest{Name: "held.mp4"})
		f = resp.GetFile()
		return err
	})
	nodes := eventuallyNodes(t, x, 4) // origin, two cachenodes, edge
	var holderAddr string
	for _, n := range nodes {
		if strings.HasPrefix(n.GrpcAddr, cacheHost(0)+":") {
			holderAddr = n.GrpcAddr
		}
	}
	// Cachenode 0 alone fetches the file (from the origin), as a viewer's
	// edge would make it, and announces it.
	hc, err := grpc.NewClient(holderAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	chunks := make([]uint32, f.ChunkCount)
	for i := range chunks {
		chunks[i] = uint32(i)
	}
	stream, err := sppv1.NewChunkServiceClient(hc).Fetch(t.Context(), &sppv1.FetchRequest{Root: f.Root, Chunks: chunks})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := stream.Recv(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 30*time.Second, "cachenode 0 is the holder of every chunk", func() error {
		resp, err := x.Locate(t.Context(), &trackerv1.LocateRequest{Root: f.Root, ChunkCount: f.ChunkCount})
		if err != nil {
			return err
		}
		for i, cs := range resp.Chunks {
			held := false
			for k, ni := range cs.NodeIndex {
				held = held || (resp.Nodes[ni].GrpcAddr == holderAddr && k < len(cs.Held) && cs.Held[k])
			}
			if !held {
				return fmt.Errorf("chunk %d not held by it", i)
			}
		}
		return nil
	})

	c.caches[0].signal(syscall.SIGSTOP)
	t.Cleanup(func() { c.caches[0].signal(syscall.SIGCONT) })
	for i, hdr := range []map[string]string{nil, {"Range": "bytes=3000000-"}} {
		v := timedGet(t, c.url("held.mp4"), hdr)
		want := data
		if i == 1 {
			want = data[3000000:]
		}
		t.Logf("request %d through the edge with the holder silent: status %d, first byte after %v, longest wait %v, all in %v",
			i, v.status, v.firstByte.Round(time.Millisecond), v.longest.Round(time.Millisecond), v.took.Round(time.Millisecond))
		if v.status/100 != 2 || sum(v.body) != sum(want) {
			t.Fatalf("request %d: status %d, %d bytes, byte-exact %v, err %v", i, v.status, len(v.body), sum(v.body) == sum(want), v.err)
		}
		// When the edge's manifest came from the other cachenode, the
		// edge may still open a chunk stream to the silent holder: it
		// gives up on it after AnswerTimeout (0.5 s, no response headers
		// and nothing on any other stream), so the worst case is about
		// the manifest's hedge plus that, ~1 s, against the 2 s bound.
		if v.longest >= silentBound {
			t.Errorf("request %d: the viewer waited %v for data, want under %v", i, v.longest, silentBound)
		}
	}
	if !c.edge.alive() || !c.caches[1].alive() {
		t.Error("the edge or the other cachenode died")
	}
}

// timed is a response read to its end with the waits measured.
type timed struct {
	status    int
	body      []byte
	err       error
	firstByte time.Duration // from sending the request
	longest   time.Duration // longest wait for data, the first byte's included
	took      time.Duration
}

// timedGet GETs url and reads the whole body, timing every wait for data
// from the moment the request is sent.
func timedGet(t *testing.T, url string, hdr map[string]string) timed {
	t.Helper()
	d := startDownload(t, url, hdr)
	d.measure, d.last = true, d.start
	err := d.read(-1)
	return timed{status: d.resp.StatusCode, body: d.got, err: err,
		firstByte: d.firstByte, longest: d.longest, took: time.Since(d.start)}
}
