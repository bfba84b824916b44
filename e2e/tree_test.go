package e2e

import (
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestP2PDTree: -S names a cache. A server, a cache joining it, a cache
// joining that cache, and a cache joining the last one: a miss climbs
// the chain, the server sends each chunk about once, and a parent killed
// mid-stream is skipped for the grandparent within the stall bound.
func TestP2PDTree(t *testing.T) {
	media := t.TempDir()
	const size = 24 << 20
	first := randomFile(t, media, "first.mp4", size)
	second := randomFile(t, media, "second.mp4", 64<<20)
	var later [][]byte // cold files for a returned parent, one per try
	for i := range 12 {
		later = append(later, randomFile(t, media, fmt.Sprintf("later-%d.mp4", i), 1<<20))
	}
	hosts := []string{"127.0.0.40", "127.0.0.41", "127.0.0.42", "127.0.0.43", "127.0.0.44"}
	port := samePort(t, hosts...)
	addr := func(n *p2pdNode) string { return net.JoinHostPort(n.host, n.port) }
	server := startP2PD(t, "server", hosts[0], port, "-i", "-p", media)
	cache := func(name, host, up string, dir string) *p2pdNode {
		return startP2PD(t, name, host, port, "-c", dir, "-n", "-S", up)
	}
	l1dir, l2dir := t.TempDir(), t.TempDir()
	l1 := cache("level1", hosts[1], addr(server), l1dir)
	l2 := cache("level2", hosts[2], addr(l1), l2dir)
	l3 := cache("level3", hosts[3], addr(l2), t.TempDir())
	waitP2PDServes(t, server.url("first.mp4"), "")
	egress := func() float64 { return metric(t, server.ops(), "p2pd_origin_egress_bytes_total", nil) }
	fetched := func(n *p2pdNode, source string) float64 {
		return metric(t, n.ops(), "p2pd_cachenode_fetched_bytes_total", map[string]string{"source": source})
	}

	t.Run("byte-exact through the grandchild, the server sends it once", func(t *testing.T) {
		waitP2PDServes(t, l3.url("first.mp4"), "")
		before := egress()
		resp, body := viewerGet(t, l3.url("first.mp4"), "", nil)
		if resp.StatusCode != 200 || sum(body) != sum(first) {
			t.Fatalf("GET via level 3: %d, sha256 equal %v", resp.StatusCode, sum(body) == sum(first))
		}
		sent := egress() - before
		t.Logf("three levels, %d MiB cold: the server sent %.2f× the file", size>>20, sent/size)
		if sent > 1.1*size {
			t.Fatalf("the server sent %.0f bytes for a %d-byte file through the chain", sent, size)
		}
		for _, n := range []*p2pdNode{l2, l3} {
			if o := fetched(n, "origin"); o != 0 {
				t.Fatalf("%s fetched %.0f bytes from the server while its parent answered", n.name, o)
			}
			if p := fetched(n, "parent"); p < size {
				t.Fatalf("%s fetched %.0f bytes from its parent, want the whole file", n.name, p)
			}
		}
	})

	t.Run("a cold sibling takes under half the file from the server", func(t *testing.T) {
		sibling := cache("sibling", hosts[4], addr(l2), t.TempDir())
		before := egress()
		resp, body := viewerGet(t, sibling.url("first.mp4"), "", nil)
		if resp.StatusCode != 200 || sum(body) != sum(first) {
			t.Fatalf("GET via the sibling: %d", resp.StatusCode)
		}
		sent := egress() - before
		t.Logf("sibling: %.0f bytes from its tier, %.0f from its parent; the server sent %.0f",
			fetched(sibling, "peer"), fetched(sibling, "parent"), sent)
		if sent >= size/2 {
			t.Fatalf("the server sent %.0f bytes to a cold sibling of a warm cache; want under %d", sent, size/2)
		}
		sibling.stop(syscall.SIGTERM)
	})

	t.Run("the parent killed mid-stream", func(t *testing.T) {
		d := startDownload(t, l3.url("second.mp4"), nil)
		if err := d.read(4 << 20); err != nil {
			t.Fatal(err)
		}
		l2.kill()
		d.startMeasuring()
		if err := d.read(-1); err != nil {
			t.Fatalf("download cut after %d bytes: %v", len(d.got), err)
		}
		if sum(d.got) != sum(second) {
			t.Fatalf("download is not byte-exact (%d bytes)", len(d.got))
		}
		if fails := metric(t, l3.ops(), "p2pd_cachenode_upstream_failures_total", map[string]string{"source": "parent"}); fails == 0 {
			t.Fatalf("level 3 saw no stream from its parent fail: the file was fetched before the kill, the test tested nothing")
		}
		if d.longest >= 2*time.Second {
			t.Fatalf("the viewer waited %v for data when the parent died; want under 2 s", d.longest)
		}
		t.Logf("longest wait after the parent died: %v", d.longest)
	})

	t.Run("children come back to a parent that returns", func(t *testing.T) {
		back := cache("level2-again", hosts[2], addr(l1), l2dir)
		try := 0
		eventually(t, 15*time.Second, "level 3 fetches through its parent again", func() error {
			if try == len(later) {
				t.Fatalf("level 3 fetched %d cold files and none through its returned parent", try)
			}
			want := later[try]
			resp, body := viewerGet(t, l3.url(fmt.Sprintf("later-%d.mp4", try)), "", nil)
			try++
			if resp.StatusCode != 200 || sum(body) != sum(want) {
				return fmt.Errorf("GET via level 3: %d", resp.StatusCode)
			}
			if served := metric(t, back.ops(), "p2pd_cachenode_bytes_served_total", nil); served < float64(len(want)) {
				// Level 3's connection to it may be waiting out its
				// reconnect backoff (3 s at most): try again later.
				time.Sleep(500 * time.Millisecond)
				return fmt.Errorf("the returned parent served %.0f bytes", served)
			}
			return nil
		})
	})
}
