//go:build linux

package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/p2pd/p2pd/internal/chunkstore"
)

// Node faults at the process level: SIGKILL, restarts, an unreachable
// etcd, damaged and full disks, a file replaced under viewers. Every
// download is checked byte for byte; a stall is measured and logged, never
// asserted (CI machines are too uneven for that).

// TestFaultCachenodeKilledMidStream: two cachenodes behind one edge; the
// one streaming to a viewer is SIGKILLed. The edge fails over mid-stream
// to the other and the viewer gets every byte right. Peer sharing is off,
// so a cachenode's open streams are the edge's.
func TestFaultCachenodeKilledMidStream(t *testing.T) {
	media := t.TempDir()
	const size = 64 << 20
	data := randomFile(t, media, "films/kill.mp4", size)
	c := startCluster(t, media, clusterOpts{caches: 2, trackerArgs: []string{"--peer-sharing=false"}})
	c.waitServed("films/kill.mp4")

	// A viewer at about 16 MiB/s: the stream is open long enough to find
	// which cachenode serves it.
	d := startDownload(t, c.url("films/kill.mp4"), nil)
	var victim *daemon
	for victim == nil && len(d.got) < size-8<<20 {
		if err := d.read(len(d.got) + 256<<10); err != nil {
			t.Fatal(err)
		}
		time.Sleep(15 * time.Millisecond)
		if len(d.got) < 8<<20 {
			continue
		}
		// Both cachenodes may hold a run of the edge's at once (chunks
		// are homed on either); one whose run has just ended would die
		// unnoticed. Kill only when one node alone is streaming: that
		// stream is the viewer's.
		var streaming []*daemon
		for _, cn := range c.caches {
			if cn.metric("p2pd_cachenode_active_streams", nil) > 0 {
				streaming = append(streaming, cn)
			}
		}
		if len(streaming) == 1 {
			victim = streaming[0]
		}
	}
	if victim == nil {
		t.Fatal("no moment in the download when one cachenode alone had a stream open")
	}
	failovers := c.edge.metric("p2pd_edge_failovers_total", nil)
	victim.p.kill()
	at := len(d.got)
	d.startMeasuring()
	if err := d.read(-1); err != nil {
		t.Fatalf("download cut after %d bytes: %v", len(d.got), err)
	}
	if sum(d.got) != sum(data) {
		t.Fatalf("download after the kill: %d bytes, byte-exact %v", len(d.got), sum(d.got) == sum(data))
	}
	after := c.edge.metric("p2pd_edge_failovers_total", nil)
	t.Logf("killed %s at byte %d of %d: longest stall %v, edge failovers %v", victim.name, at, size, d.longest.Round(time.Millisecond), after-failovers)
	if after == failovers {
		t.Errorf("no failover counted: the kill did not cut the edge's stream")
	}
}

// TestFaultOriginKilledAfterCaching: once a file is cached, the origin's
// death is invisible to its viewers; a file never cached fails with a
// clear 5xx, not a hang.
func TestFaultOriginKilledAfterCaching(t *testing.T) {
	media := t.TempDir()
	data := randomFile(t, media, "cached.mp4", 24<<20+123)
	cold := randomFile(t, media, "cold.mp4", 3<<20)
	c := startCluster(t, media, clusterOpts{})
	c.waitServed("cached.mp4")
	c.waitServed("cold.mp4")
	c.mustGet("cached.mp4", data)
	eventually(t, 10*time.Second, "every chunk on disk", func() error {
		if n := holdings(c.cacheDirs[0]); n < 25 {
			return fmt.Errorf("%d chunks stored", n)
		}
		return nil
	})

	c.origin.p.kill()
	for range 2 {
		c.mustGet("cached.mp4", data)
	}
	code, body, err := getAll(c.url("cached.mp4"), map[string]string{"Range": "bytes=20000000-20999999"})
	if err != nil || code != 206 || !bytes.Equal(body, data[20000000:21000000]) {
		t.Fatalf("range with the origin dead: %d, %v", code, err)
	}
	code, body, err = getAll(c.url("cold.mp4"), nil)
	t.Logf("a file never cached, origin dead: status %d, %d bytes, %v", code, len(body), err)
	if code == 200 && sum(body) == sum(cold) {
		t.Fatal("a file never cached was served with its origin dead: test is not testing")
	}
	if code != 0 && code < 500 {
		t.Fatalf("file never cached: status %d, want 5xx or a cut connection", code)
	}
	if code != 0 && bytes.Contains(body, cold[:64]) {
		t.Fatal("error body carries content")
	}
}

// TestFaultTrackerRestart: the tracker (and the etcd embedded in it) is
// SIGKILLed. Edges go on serving what they looked up (stale answers) while
// it is down; once it is back, nodes are registered again, their holdings
// known, and Locate answers for new content.
func TestFaultTrackerRestart(t *testing.T) {
	media := t.TempDir()
	data := randomFile(t, media, "known.mp4", 16<<20)
	later := randomFile(t, media, "later.mp4", 5<<20)
	c := startCluster(t, media, clusterOpts{edgeArgs: noEdgeMemory}) // every GET needs Locate and a cachenode
	c.waitServed("known.mp4")
	c.waitServed("later.mp4")
	c.mustGet("known.mp4", data)

	c.tracker.p.kill()
	// Longer than every TTL of the edge's lookups (1-2 s).
	for range 3 {
		c.mustGet("known.mp4", data)
		time.Sleep(time.Second)
	}
	code, _, _ := getAll(c.url("later.mp4"), nil)
	t.Logf("a file this edge never looked up, tracker down: status %d", code)

	c.tracker.restart()
	eventually(t, 30*time.Second, "nodes back in the tracker", func() error {
		nodes := c.tracker.metric("p2pd_tracker_nodes", nil)
		have := c.tracker.metric("p2pd_tracker_holdings", nil)
		if nodes != 3 || have < 3 { // origin, cachenode, edge; origin: 2 files, cachenode: known.mp4
			return fmt.Errorf("%v nodes, %v holdings", nodes, have)
		}
		return nil
	})
	c.mustGetSoon("later.mp4", later) // GetFile, Locate, a cachenode miss: all through the new tracker
	c.mustGet("known.mp4", data)
}

// TestFaultEtcdUnreachable: etcd (an embedded member in a process of its
// own) is frozen with SIGSTOP for longer than a node's lease TTL — a hung
// etcd, the nasty kind of unreachable. Viewers of cached content are not
// affected; when etcd returns, every node is registered again and a
// tracker that starts from etcd alone sees them and their holdings.
func TestFaultEtcdUnreachable(t *testing.T) {
	const outage = 15 * time.Second // > the 10 s lease TTL; the 30 s adds only CI time
	media := t.TempDir()
	data := randomFile(t, media, "cached.mp4", 16<<20)
	fresh := randomFile(t, media, "fresh.mp4", 4<<20)

	// The etcd host: a tracker binary whose only job is its embedded etcd.
	etcdAddr := freeAddr(t, "127.0.0.8")
	etcdOps := freeAddr(t, "127.0.0.8")
	etcd := &daemon{t: t, name: "etcd", bin: "tracker", ops: etcdOps, args: []string{
		"--listen", freeAddr(t, "127.0.0.8"), "--embedded-etcd", t.TempDir(),
		"--etcd-client-addr", etcdAddr, "--etcd-peer-addr", freeAddr(t, "127.0.0.8"), "--ops", etcdOps}}
	etcd.start()
	t.Cleanup(func() { etcd.p.cmd.Process.Signal(syscall.SIGCONT) }) // before its SIGTERM
	waitReady(t, etcdOps)

	c := startCluster(t, media, clusterOpts{etcd: etcdAddr, edgeArgs: noEdgeMemory})
	c.waitServed("cached.mp4")
	c.waitServed("fresh.mp4")
	c.mustGet("cached.mp4", data)

	etcd.signal(syscall.SIGSTOP)
	start := time.Now()
	served := 0
	for time.Since(start) < outage {
		c.mustGet("cached.mp4", data)
		served++
		code, body, err := getAll(c.url("cached.mp4"), map[string]string{"Range": "bytes=1000-1999"})
		if err != nil || code != 206 || !bytes.Equal(body, data[1000:2000]) {
			t.Fatalf("range during the etcd outage: %d, %v", code, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	etcd.signal(syscall.SIGCONT)
	t.Logf("etcd frozen for %v: %d full downloads of a cached file, all byte-exact", time.Since(start).Round(time.Second), served)

	eventually(t, 60*time.Second, "nodes registered again", func() error {
		if n := c.tracker.metric("p2pd_tracker_nodes", nil); n != 3 { // origin, cachenode, edge
			return fmt.Errorf("%v nodes", n)
		}
		return nil
	})
	c.mustGetSoon("fresh.mp4", fresh) // new holdings flow through etcd again

	// A tracker that knows only what etcd holds.
	witness := c.service("witness", "tracker", "127.0.0.2", []string{"--listen", freeAddr(t, "127.0.0.2"), "--etcd-endpoints", etcdAddr})
	waitReady(t, witness.ops)
	eventually(t, 30*time.Second, "state in etcd", func() error {
		nodes := witness.metric("p2pd_tracker_nodes", nil)
		have := witness.metric("p2pd_tracker_holdings", nil)
		if nodes != 3 || have < 4 { // origin, cachenode, edge; origin: 2 files, cachenode: both
			return fmt.Errorf("%v nodes, %v holdings", nodes, have)
		}
		return nil
	})
	for _, s := range []*daemon{c.origin, c.caches[0]} {
		b, _ := os.ReadFile(s.p.log)
		t.Logf("%s: lease lost and registered again: %v", s.name, bytes.Contains(b, []byte("registering again")))
	}
}

// TestFaultCachenodeKilledWhileWriting: a cachenode filling its store from
// the origin is SIGKILLed mid-download, then started again on the same
// disk. Every chunk file it left is complete and correct (chunks appear
// only by rename of an fsynced temp file); chunks torn behind its back
// (as a file system that loses data might) are detected, counted,
// refetched and never served.
func TestFaultCachenodeKilledWhileWriting(t *testing.T) {
	media := t.TempDir()
	const size = 48 << 20
	data := randomFile(t, media, "big.mp4", size)
	c := startCluster(t, media, clusterOpts{edgeArgs: noEdgeMemory})
	c.waitServed("big.mp4")
	cn, dir := c.caches[0], c.cacheDirs[0]

	d := startDownload(t, c.url("big.mp4"), nil)
	if err := d.read(20 << 20); err != nil {
		t.Fatal(err)
	}
	cn.p.kill()
	d.read(-1) // cut short: the cachenode is dead

	chunkDir := onlyChunkDir(t, dir)
	files, _ := os.ReadDir(chunkDir)
	temps, complete := 0, 0
	for _, f := range files {
		if strings.HasSuffix(f.Name(), ".tmp") {
			temps++
			continue
		}
		complete++
		checkChunkFile(t, filepath.Join(chunkDir, f.Name()), data, 1<<20)
	}
	t.Logf("after SIGKILL: %d complete chunk files, all correct; %d temp files", complete, temps)
	if complete == 0 {
		t.Fatal("nothing stored before the kill: test is not testing")
	}
	// What a crash on a file system without our guarantees could leave:
	// a torn chunk, a chunk with garbage, a stray temp file.
	names := sortedChunks(t, chunkDir)
	torn, garbled := names[0], names[len(names)-1]
	truncate(t, filepath.Join(chunkDir, torn), 1000)
	garble(t, filepath.Join(chunkDir, garbled))
	os.WriteFile(filepath.Join(chunkDir, "7.123456.tmp"), []byte("half a chunk"), 0o644)

	cn.restart()
	for _, f := range mustReadDir(t, chunkDir) {
		if strings.HasSuffix(f.Name(), ".tmp") {
			t.Errorf("temp file %s survived the restart", f.Name())
		}
	}
	c.mustGetSoon("big.mp4", data)
	c.mustGet("big.mp4", data)
	if n := cn.metric("p2pd_cachenode_digest_failures_total", nil); n != 2 {
		t.Errorf("digest failures %v, want 2 (the torn and the garbled chunk)", n)
	}
	eventually(t, 10*time.Second, "damaged chunks stored again", func() error {
		for _, name := range []string{torn, garbled} {
			b, err := os.ReadFile(filepath.Join(chunkDir, name))
			idx, _ := strconv.Atoi(name)
			// The chunk's bytes, then the store's trailer (digest, CRC32C).
			if want := chunkOf(data, idx, 1<<20); err != nil || len(b) != len(want)+chunkstore.TrailerSize || !bytes.Equal(b[:len(want)], want) {
				return fmt.Errorf("chunk %s: %v", name, err)
			}
		}
		return nil
	})
}

// TestFaultCorruptChunkOnDisk: chunk files damaged on a cachenode's disk
// while it is down (bit rot, a bad sector, an operator's mistake) are
// detected by digest when read, counted, discarded and fetched again;
// the viewer gets the right bytes. (While the node runs, the same path is
// covered by cacheserver's TestDamagedStoredChunkIsNeverServed; a restart
// makes sure the bytes come from disk, not the memory cache.)
func TestFaultCorruptChunkOnDisk(t *testing.T) {
	media := t.TempDir()
	data := randomFile(t, media, "rot.mp4", 8<<20)
	c := startCluster(t, media, clusterOpts{edgeArgs: noEdgeMemory})
	c.waitServed("rot.mp4")
	c.mustGet("rot.mp4", data)
	cn, dir := c.caches[0], c.cacheDirs[0]
	eventually(t, 10*time.Second, "every chunk on disk", func() error {
		if n := holdings(dir); n != 8 {
			return fmt.Errorf("%d chunks stored", n)
		}
		return nil
	})
	cn.p.stop(syscall.SIGTERM)
	chunkDir := onlyChunkDir(t, dir)
	garble(t, filepath.Join(chunkDir, "2"))
	truncate(t, filepath.Join(chunkDir, "5"), 4096)
	// A valid chunk in the wrong place: digests are per index.
	if err := os.WriteFile(filepath.Join(chunkDir, "6"), chunkOf(data, 7, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	egress := c.origin.metric("p2pd_origin_egress_bytes_total", nil)
	cn.restart()
	c.mustGetSoon("rot.mp4", data)
	if n := cn.metric("p2pd_cachenode_digest_failures_total", nil); n != 3 {
		t.Errorf("digest failures %v, want 3", n)
	}
	if got := c.origin.metric("p2pd_origin_egress_bytes_total", nil) - egress; got != 3<<20 {
		t.Errorf("origin sent %v bytes again, want the 3 damaged chunks (%d)", got, 3<<20)
	}
	for _, idx := range []int{2, 5, 6} {
		eventually(t, 10*time.Second, "chunk stored again", func() error {
			b, err := os.ReadFile(filepath.Join(chunkDir, strconv.Itoa(idx)))
			// The chunk's bytes, then the store's trailer (digest, CRC32C).
			if want := chunkOf(data, idx, 1<<20); err != nil || len(b) != len(want)+chunkstore.TrailerSize || !bytes.Equal(b[:len(want)], want) {
				return fmt.Errorf("chunk %d not repaired: %v", idx, err)
			}
			return nil
		})
	}
}

// TestFaultDiskFull: a cachenode whose disk (an 8 MiB tmpfs) is smaller
// than its --max-bytes. Filled by another file, it serves through without
// caching; with room, it caches and evicts to stay within the disk. It
// never crashes and never serves a wrong byte.
func TestFaultDiskFull(t *testing.T) {
	disk := t.TempDir()
	if err := syscall.Mount("tmpfs", disk, "tmpfs", 0, "size=8m"); err != nil {
		t.Skipf("cannot mount an 8 MiB tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(disk, syscall.MNT_DETACH) }) // after the cachenode's cleanup stops it
	store := filepath.Join(disk, "store")
	media := t.TempDir()
	data := randomFile(t, media, "movie.mp4", 24<<20)
	c := startCluster(t, media, clusterOpts{edgeArgs: noEdgeMemory, cacheArgs: func(int) []string {
		return []string{"--cache-dir", store, "--max-bytes", "1G"}
	}})
	c.waitServed("movie.mp4")
	cn := c.caches[0]

	// Full of someone else's data.
	filler := filepath.Join(disk, "filler")
	if err := os.WriteFile(filler, make([]byte, 16<<20), 0o644); err == nil {
		t.Fatal("wrote 16 MiB to an 8 MiB disk")
	}
	c.mustGet("movie.mp4", data)
	eventually(t, 10*time.Second, "store errors counted", func() error {
		if n := cn.metric("p2pd_cachenode_store_errors_total", nil); n == 0 {
			return fmt.Errorf("no store error")
		}
		return nil
	})
	t.Logf("disk full: served through, %v store errors, %v bytes held",
		cn.metric("p2pd_cachenode_store_errors_total", nil), cn.metric("p2pd_cachenode_store_bytes", nil))

	// Room again, but less than the file: the store evicts to fit.
	os.Remove(filler)
	for range 2 {
		c.mustGet("movie.mp4", data)
	}
	eventually(t, 10*time.Second, "evictions", func() error {
		if n := cn.metric("p2pd_cachenode_evictions_total", nil); n == 0 {
			return fmt.Errorf("no eviction")
		}
		return nil
	})
	held := cn.metric("p2pd_cachenode_store_bytes", nil)
	t.Logf("8 MiB disk, 1 GiB limit, 24 MiB file: %v bytes held, %v evictions, %v store errors", held,
		cn.metric("p2pd_cachenode_evictions_total", nil), cn.metric("p2pd_cachenode_store_errors_total", nil))
	if held == 0 || held > 8<<20 {
		t.Errorf("store holds %v bytes on an 8 MiB disk", held)
	}
	if !cn.alive() {
		t.Fatal("the cachenode died")
	}
}

// TestFaultFileReplacedWhileStreaming: a file is replaced on the origin's
// disk while a viewer streams it. The viewer gets the old version whole,
// or a prefix of it and a cut connection — never a byte of the new one.
// The file gets a new root and ETag; a resume with If-Range on the old
// ETag gets the whole new version (200), never a splice.
func TestFaultFileReplacedWhileStreaming(t *testing.T) {
	media := t.TempDir()
	const size = 32 << 20
	v1 := randomFile(t, media, "films/swap.mp4", size)
	c := startCluster(t, media, clusterOpts{originArgs: []string{"--chunk-size", "262144", "--rescan", "300ms"}})
	oldTag := c.waitServed("films/swap.mp4")

	d := startDownload(t, c.url("films/swap.mp4"), nil)
	if err := d.read(2 << 20); err != nil {
		t.Fatal(err)
	}
	// Replace it as tools do: write aside, rename over.
	v2 := randomFile(t, media, "films/.swap.mp4.new", size)
	if err := os.Rename(filepath.Join(media, "films/.swap.mp4.new"), filepath.Join(media, "films/swap.mp4")); err != nil {
		t.Fatal(err)
	}
	var newTag string
	eventually(t, 30*time.Second, "new version published", func() error {
		resp, err := http.Head(c.url("films/swap.mp4"))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if newTag = resp.Header.Get("ETag"); newTag == oldTag {
			return fmt.Errorf("ETag still %s", newTag)
		}
		return nil
	})

	err := d.read(-1)
	if !bytes.Equal(d.got, v1[:len(d.got)]) {
		t.Fatal("the stream begun on the old version carries other bytes")
	}
	t.Logf("stream of the old version: %d of %d bytes, complete %v, ended by %v", len(d.got), size, len(d.got) == size, err)

	// A player resuming where it stopped, guarding with the old ETag.
	code, body, err := getAll(c.url("films/swap.mp4"), map[string]string{
		"Range": fmt.Sprintf("bytes=%d-", len(d.got)/2), "If-Range": oldTag})
	if err != nil || code != 200 || sum(body) != sum(v2) {
		t.Fatalf("If-Range with the old ETag: status %d, whole new version %v, err %v", code, sum(body) == sum(v2), err)
	}
	code, body, err = getAll(c.url("films/swap.mp4"), map[string]string{"Range": "bytes=100-199", "If-Range": newTag})
	if err != nil || code != 206 || !bytes.Equal(body, v2[100:200]) {
		t.Fatalf("If-Range with the new ETag: status %d, %v", code, err)
	}
	c.mustGet("films/swap.mp4", v2)
}

// noEdgeMemory turns the edge's memory cache off, for tests of what a
// cachenode serves: every request must reach it.
var noEdgeMemory = []string{"--memory-cache", "0"}

// chunkOf returns chunk idx of data cut in chunks of size.
func chunkOf(data []byte, idx, size int) []byte {
	return data[idx*size : min(len(data), (idx+1)*size)]
}

// onlyChunkDir returns the chunk directory of the one file a store holds.
func onlyChunkDir(t *testing.T, store string) string {
	t.Helper()
	roots := mustReadDir(t, filepath.Join(store, "chunks"))
	if len(roots) != 1 {
		t.Fatalf("store holds %d files, want 1", len(roots))
	}
	return filepath.Join(store, "chunks", roots[0].Name())
}

func mustReadDir(t *testing.T, dir string) []os.DirEntry {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// sortedChunks returns the names of complete chunk files, by index.
func sortedChunks(t *testing.T, dir string) []string {
	t.Helper()
	var idx []int
	for _, f := range mustReadDir(t, dir) {
		if i, err := strconv.Atoi(f.Name()); err == nil {
			idx = append(idx, i)
		}
	}
	if len(idx) < 2 {
		t.Fatalf("%d chunks stored, want 2 or more", len(idx))
	}
	names := make([]string, 0, len(idx))
	for i := range idx {
		for j := i + 1; j < len(idx); j++ {
			if idx[j] < idx[i] {
				idx[i], idx[j] = idx[j], idx[i]
			}
		}
		names = append(names, strconv.Itoa(idx[i]))
	}
	return names
}

// checkChunkFile fails the test unless the file is exactly its chunk and
// the store's trailer.
func checkChunkFile(t *testing.T, path string, data []byte, size int) {
	t.Helper()
	idx, err := strconv.Atoi(filepath.Base(path))
	if err != nil {
		t.Fatalf("unexpected file %s", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := chunkOf(data, idx, size); len(b) != len(want)+chunkstore.TrailerSize || sha256.Sum256(b[:len(want)]) != sha256.Sum256(want) {
		t.Errorf("chunk file %d: %d bytes, not its chunk: a torn or wrong chunk was left on disk", idx, len(b))
	}
}

func truncate(t *testing.T, path string, n int64) {
	t.Helper()
	if err := os.Truncate(path, n); err != nil {
		t.Fatal(err)
	}
}

// garble flips one byte in the middle of a file, keeping its size.
func garble(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
