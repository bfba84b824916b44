package cacheserver

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/services/tracker/trackertest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// post records a command at the tracker, as the admin API does.
func (c *cluster) post(action trackerv1.CommandAction, m *manifest.Manifest, sel *trackerv1.NodeSelector) {
	c.t.Helper()
	_, err := c.tracker.PostCommand(context.Background(), &trackerv1.PostCommandRequest{Command: &trackerv1.Command{
		Action: action, Root: m.Root[:], Name: m.Name, Nodes: sel,
	}})
	if err != nil {
		c.t.Fatalf("post %v: %v", action, err)
	}
}

// inMemory counts the chunks of m in the node's memory cache.
func (cn *cache) inMemory(m *manifest.Manifest) int {
	n := 0
	for i := range m.ChunkCount() {
		if cn.srv.hot.Contains(m.Root, i) {
			n++
		}
	}
	return n
}

func TestPrewarmFillsTheChosenNodesThroughTheSwarm(t *testing.T) {
	for _, tc := range []struct {
		name   string
		chosen func(ids []string) *trackerv1.NodeSelector
		want   int // nodes that must hold the file
	}{
		{"all", func([]string) *trackerv1.NodeSelector { return &trackerv1.NodeSelector{All: true} }, 4},
		{"list", func(ids []string) *trackerv1.NodeSelector { return &trackerv1.NodeSelector{NodeIds: ids[:3]} }, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := newCluster(t)
			media := t.TempDir()
			data, m := testFile(t, media, "pre.bin", 64*testChunkSize)
			o := cl.startOrigin(media)
			cl.waitHolders(m.Root, 0, "x", "origin")
			var cns []*cache
			var ids []string
			for i := range 4 {
				id := fmt.Sprintf("cache-%d", i)
				ids = append(ids, id)
				cns = append(cns, cl.startCache(id, t.TempDir(), Config{FetchMisses: true}))
			}
			trackertest.Eventually(t, "every cachenode registered", func() bool {
				resp, err := cl.tracker.ListNodes(context.Background(), &trackerv1.ListNodesRequest{})
				return err == nil && len(resp.Nodes) == len(cns)+1
			})
			cl.post(trackerv1.CommandAction_COMMAND_ACTION_PREWARM, m, tc.chosen(ids))
			for _, cn := range cns[:tc.want] {
				trackertest.Eventually(t, "prewarmed", func() bool { return cn.store.Count(m.Root) == m.ChunkCount() })
				trackertest.Eventually(t, "prewarm over", func() bool { return metricValue(t, cn.reg, "p2pd_cachenode_commands_total", "action", "prewarm") == 1 })
				got, err := cn.fetch(t.Context(), m, allChunks(m), true) // local only: held, not fetched
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("a prewarmed node serves the file: %v (%d bytes, equal %v)", err, len(got), bytes.Equal(got, data))
				}
			}
			for _, cn := range cns[tc.want:] {
				if n := metricValue(t, cn.reg, "p2pd_cachenode_commands_total", "action", "prewarm"); n != 0 {
					t.Errorf("a node the command did not choose prewarmed (%v)", n)
				}
			}
			egress := metricValue(t, o.reg, "p2pd_origin_egress_bytes_total")
			t.Logf("origin egress %v bytes to prewarm a %d-byte file on %d nodes", egress, len(data), tc.want)
			if egress > 1.1*float64(len(data)) {
				t.Fatalf("origin sent %v bytes to prewarm a %d-byte file on %d nodes; want <= 1.1x", egress, len(data), tc.want)
			}
		})
	}
}

func TestPurgeDropsDiskAndMemory(t *testing.T) {
	cl := newCluster(t)
	media := t.TempDir()
	data, m := testFile(t, media, "purged.bin", 8*testChunkSize)
	_, other := testFile(t, media, "other.bin", 4*testChunkSize)
	o := cl.startOrigin(media)
	cl.waitHolders(m.Root, 0, "x", "origin")
	cl.waitHolders(other.Root, 0, "x", "origin")
	cn := cl.startCache("cache-1", t.TempDir(), Config{FetchMisses: true})
	for _, f := range []*manifest.Manifest{m, other} {
		if _, err := cn.fetch(t.Context(), f, allChunks(f), false); err != nil {
			t.Fatal(err)
		}
	}
	trackertest.Eventually(t, "stored", func() bool { return cn.store.Count(m.Root) == m.ChunkCount() })
	cl.waitHolders(m.Root, 0, "x", "cache-1")
	if cn.inMemory(m) == 0 {
		t.Fatal("nothing in memory before the purge: the test would prove nothing")
	}
	before := metricValue(t, o.reg, "p2pd_origin_egress_bytes_total")

	cl.post(trackerv1.CommandAction_COMMAND_ACTION_PURGE, m, nil)
	trackertest.Eventually(t, "purged", func() bool { return metricValue(t, cn.reg, "p2pd_cachenode_commands_total", "action", "purge") == 1 })
	if n, mem := cn.store.Count(m.Root), cn.inMemory(m); n != 0 || mem != 0 {
		t.Fatalf("after the purge: %d chunks on disk, %d in memory", n, mem)
	}
	if n := cn.store.Count(other.Root); n != other.ChunkCount() {
		t.Errorf("another file lost chunks: %d of %d left", n, other.ChunkCount())
	}
	_, err := cn.fetch(t.Context(), m, allChunks(m), true)
	if status.Code(err) != codes.NotFound {
		t.Fatalf("a local-only fetch after the purge: %v, want NotFound", err)
	}
	trackertest.Eventually(t, "the tracker lists no cachenode holding it", func() bool {
		for _, id := range cl.holders(m.Root, 0, "x") {
			if id == "cache-1" {
				return false
			}
		}
		return true
	})

	// The next request fetches anew, byte-exact.
	got, err := cn.fetch(t.Context(), m, allChunks(m), false)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fetch after the purge: %v, equal %v", err, bytes.Equal(got, data))
	}
	if sent := metricValue(t, o.reg, "p2pd_origin_egress_bytes_total") - before; sent < float64(len(data)) {
		t.Errorf("origin sent %v bytes after the purge, want the whole %d-byte file again", sent, len(data))
	}
}

func TestPurgeLogKeepsNothingAskedForBeforeThePurge(t *testing.T) {
	var p purgeLog
	a, b := manifest.Digest{1}, manifest.Digest{2}
	asked := time.Now()
	kept := func(root manifest.Digest, start time.Time) bool {
		ran := false
		ok := p.keep(root, start, func() { ran = true })
		if ok != ran {
			t.Fatalf("keep reported %v but ran %v", ok, ran)
		}
		return ok
	}
	if !kept(a, asked) {
		t.Fatal("nothing purged yet, yet not kept")
	}
	dropped := false
	p.purge(a, func() { dropped = true })
	if !dropped {
		t.Fatal("purge did not drop")
	}
	at := p.at[a]
	for _, tc := range []struct {
		name  string
		root  manifest.Digest
		start time.Time
		want  bool
	}{
		{"asked before the purge", a, asked, false},
		{"asked at the purge", a, at, false},
		{"asked after the purge", a, at.Add(time.Nanosecond), true},
		{"another file", b, asked, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := kept(tc.root, tc.start); got != tc.want {
				t.Errorf("kept = %v, want %v", got, tc.want)
			}
		})
	}
}
