package cacheserver

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/services/tracker/trackertest"
)

// TestSourcesClimb: a chunk's sources in the order a miss climbs: near
// holders, relays in their order, parents nearest first, holders
// elsewhere, the origin; non-holders that do not relay are dropped.
func TestSourcesClimb(t *testing.T) {
	node := func(id, region, parent string, role trackerv1.Role) *trackerv1.Node {
		return &trackerv1.Node{Id: id, Role: role, GrpcAddr: id + ":1", Region: region, Parent: parent}
	}
	cache, origin := trackerv1.Role_ROLE_CACHENODE, trackerv1.Role_ROLE_ORIGIN
	type listed struct {
		n           *trackerv1.Node
		held, relay bool
	}
	tests := []struct {
		name   string
		cfg    Config
		listed []listed // in the tracker's order
		want   []string // id/class
	}{
		{
			name: "region: near holder, relays, far holder, origin",
			cfg:  Config{NodeID: "me", Region: "a"},
			listed: []listed{
				{n: node("origin", "", "", origin), held: true},
				{n: node("far", "b", "", cache), held: true},
				{n: node("shield", "a", "", cache), relay: true},
				{n: node("standin", "a", "", cache), relay: true},
				{n: node("idle", "a", "", cache)},
				{n: node("near", "a", "", cache), held: true},
			},
			want: []string{"near/0", "shield/100", "standin/101", "far/300", "origin/1000"},
		},
		{
			name: "tree: tier peer, parent, grandparent, other tiers, origin",
			cfg:  Config{NodeID: "me", Parent: "p1", Parents: []Parent{{ID: "p1", Addr: "p1:1"}, {ID: "p2", Addr: "p2:1"}}},
			listed: []listed{
				{n: node("origin", "", "", origin), held: true},
				{n: node("p1", "", "p2", cache), held: true}, // a parent holding it is asked as a parent
				{n: node("cousin", "", "x", cache), held: true},
				{n: node("sibling", "", "p1", cache), held: true},
			},
			want: []string{"sibling/0", "p1/200", "p2/201", "cousin/300", "origin/1000"},
		},
		{
			name:   "the node itself is never its own source",
			cfg:    Config{NodeID: "me"},
			listed: []listed{{n: node("me", "", "", cache), held: true}, {n: node("origin", "", "", origin), held: true}},
			want:   []string{"origin/1000"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &base{cfg: tt.cfg}
			resp := &trackerv1.LocateResponse{Chunks: []*trackerv1.ChunkSources{{}}}
			for i, l := range tt.listed {
				resp.Nodes = append(resp.Nodes, l.n)
				cs := resp.Chunks[0]
				cs.NodeIndex = append(cs.NodeIndex, uint32(i))
				cs.Held = append(cs.Held, l.held)
				cs.Relay = append(cs.Relay, l.relay)
			}
			var got []string
			for _, src := range s.sources(resp, 0) {
				got = append(got, fmt.Sprintf("%s/%d", src.ID, src.class))
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("sources = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestHeldAndRelayedChunksOfOneSource: a region's shield holds every
// other chunk of a file and is the relay of the rest. A cachenode of the
// region missing the whole file asks the shield for the chunks it holds
// as a holder and for the others as a relay request, on streams of their
// own: nothing reaches it from the origin, and the origin sends the file
// once.
func TestHeldAndRelayedChunksOfOneSource(t *testing.T) {
	cl := newCluster(t)
	media := t.TempDir()
	data, m := testFile(t, media, "hr.bin", 8*testChunkSize)
	o := cl.startOrigin(media)
	cl.waitHolders(m.Root, 0, "x", "origin")
	shield := cl.startCache("shield", t.TempDir(), Config{FetchMisses: true, Prefetch: -1, Region: "a", Shield: true})
	for i := 0; i < m.ChunkCount(); i += 2 {
		got, err := shield.fetch(t.Context(), m, []uint32{uint32(i)}, false)
		if err != nil || !bytes.Equal(got, data[i*testChunkSize:(i+1)*testChunkSize]) {
			t.Fatalf("shield fetch of chunk %d: %v", i, err)
		}
	}
	cl.waitHolders(m.Root, 6, "x", "shield")

	me := cl.startCache("me", t.TempDir(), Config{FetchMisses: true, Prefetch: -1, Region: "a"})
	trackertest.Eventually(t, "me registered", func() bool {
		resp, err := cl.tracker.ListNodes(context.Background(), &trackerv1.ListNodesRequest{})
		return err == nil && len(resp.Nodes) == 3
	})
	got, err := me.fetch(t.Context(), m, allChunks(m), false)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fetch: %v", err)
	}
	if n := metricValue(t, me.reg, "p2pd_cachenode_fetched_bytes_total", "source", "origin"); n != 0 {
		t.Errorf("the region's cachenode fetched %v bytes from the origin; want 0 (held chunks from its shield, the rest through it)", n)
	}
	if n := metricValue(t, me.reg, "p2pd_cachenode_fetched_region_bytes_total", "tier", "relay"); n != float64(4*testChunkSize) {
		t.Errorf("%v bytes came through the shield as a relay; want the 4 chunks it did not hold (%d)", n, 4*testChunkSize)
	}
	if egress := metricValue(t, o.reg, "p2pd_origin_egress_bytes_total"); egress != float64(len(data)) {
		t.Errorf("the origin sent %v bytes of a %d-byte file; want it once", egress, len(data))
	}
}
