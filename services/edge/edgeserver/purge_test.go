package edgeserver

import (
	"bytes"
	"context"
	"testing"
	"time"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/services/tracker/trackerclient"
)

func TestPurgeEmptiesTheMemoryCache(t *testing.T) {
	f := newFixtureFile(t, "films/purged.mp4", bigSize, 3)
	kept := newFixtureFile(t, "films/kept.mp4", 2*testChunk, 4)
	e := newEnv(t, 1, []*fixtureFile{f, kept}, func(c *Config) { c.MemoryCacheBytes = 64 << 20 })
	tc, err := trackerclient.Dial(e.tracker.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); tc.FollowCommands(ctx, e.edge.NodeID(), nil, e.edge.apply) }()
	t.Cleanup(func() { cancel(); <-done })

	get := func(ff *fixtureFile) {
		t.Helper()
		resp, body, err := e.do(t, "GET", "/"+ff.m.Name)
		if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, ff.data) {
			t.Fatalf("GET %s: status %d, err %v, equal %v", ff.m.Name, resp.StatusCode, err, bytes.Equal(body, ff.data))
		}
	}
	cached := func(ff *fixtureFile) int {
		n := 0
		for i := range ff.m.ChunkCount() {
			if e.edge.hot.Contains(ff.m.Root, i) {
				n++
			}
		}
		return n
	}
	get(f)
	get(kept)
	if cached(f) != f.m.ChunkCount() {
		t.Fatalf("%d of %d chunks in memory before the purge", cached(f), f.m.ChunkCount())
	}
	_, asked := e.nodes[0].stats()

	// A prewarm, and a purge for another node, change nothing here.
	for _, c := range []*trackerv1.Command{
		{Action: trackerv1.CommandAction_COMMAND_ACTION_PREWARM, Root: f.m.Root[:], Nodes: &trackerv1.NodeSelector{All: true}},
		{Action: trackerv1.CommandAction_COMMAND_ACTION_PURGE, Root: f.m.Root[:], Nodes: &trackerv1.NodeSelector{NodeIds: []string{"edge-other"}}},
		{Action: trackerv1.CommandAction_COMMAND_ACTION_PURGE, Root: f.m.Root[:], Name: f.m.Name},
	} {
		if _, err := e.tc.PostCommand(t.Context(), &trackerv1.PostCommandRequest{Command: c}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for cached(f) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("purge not applied: %d chunks still in memory", cached(f))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := cached(kept); n != kept.m.ChunkCount() {
		t.Errorf("another file lost memory: %d of %d chunks left", n, kept.m.ChunkCount())
	}
	// The next request fetches every chunk anew.
	get(f)
	if _, now := e.nodes[0].stats(); now-asked != f.m.ChunkCount() {
		t.Errorf("after the purge the node was asked for %d chunks, want %d", now-asked, f.m.ChunkCount())
	}
}
