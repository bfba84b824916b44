package trackerserver

import (
	"slices"
	"testing"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/rank"
)

// TestLocateRegions: each region fetches through its own shields, sources
// in the requester's region come first, and homes are chosen per tier.
func TestLocateRegions(t *testing.T) {
	f := newFixture(t)
	c, _ := f.tracker(Config{PeerSharing: true})
	ctx := testCtx(t)
	r := root("regions")
	if _, err := c.PublishFile(ctx, &trackerv1.PublishFileRequest{File: &trackerv1.File{
		Name: "regions.mp4", Size: 8 << 20, ChunkSize: 1 << 20, ChunkCount: 8, Root: r,
	}}); err != nil {
		t.Fatal(err)
	}
	reg := func(n *trackerv1.Node) int64 {
		n.GrpcAddr = "127.0.0.1:1"
		resp, err := c.Register(ctx, &trackerv1.RegisterRequest{Node: n, Secret: secretOf(n.Id)})
		if err != nil {
			t.Fatalf("register %s: %v", n.Id, err)
		}
		return resp.LeaseId
	}
	announce(t, c, "origin", reg(&trackerv1.Node{Id: "origin", Role: origin}), have(r, 8, span(0, 8)...))
	for _, n := range []*trackerv1.Node{
		{Id: "a-1", Role: cachenode, Region: "a", Shield: true},
		{Id: "a-2", Role: cachenode, Region: "a"},
		{Id: "a-3", Role: cachenode, Region: "a"},
		{Id: "b-1", Role: cachenode, Region: "b", Shield: true},
		{Id: "b-3", Role: cachenode, Region: "b"},
		{Id: "t-1", Role: cachenode, Parent: "p"},
		{Id: "t-2", Role: cachenode, Parent: "p"},
	} {
		reg(n)
	}
	// b-2 holds chunks 0-3; a-3 holds chunk 4.
	announce(t, c, "b-2", reg(&trackerv1.Node{Id: "b-2", Role: cachenode, Region: "b"}), have(r, 8, span(0, 4)...))
	announce(t, c, "a-3", reg(&trackerv1.Node{Id: "a-3", Role: cachenode, Region: "a"}), have(r, 8, 4))

	locate := func(t *testing.T, req *trackerv1.LocateRequest) []string {
		t.Helper()
		resp, err := c.Locate(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return relayed(resp)[0]
	}
	key := func(chunk uint32) []byte { return rank.ChunkKey(r, chunk) }
	// Chunk 7's home among the shields of both regions, and the other one.
	home7, other7 := rank.Home(key(7), []string{"a-1", "b-1"}), "a-1"
	if home7 == "a-1" {
		other7 = "b-1"
	}
	tests := []struct {
		name      string
		requester string
		chunk     uint32
		region    string   // edges: LocateRequest.region
		want      []string // the answer starts with these
	}{
		{name: "a held chunk elsewhere goes through the region's shield", requester: "a-2", chunk: 0,
			want: []string{"a-1?^"}},
		{name: "the shield fetches from the other region's holder", requester: "a-1", chunk: 0,
			want: []string{"b-2"}},
		{name: "a holder in the region is asked directly", requester: "a-2", chunk: 4,
			want: []string{"a-3"}},
		{name: "nobody holds it: the other region has its own shield", requester: "b-3", chunk: 6,
			want: []string{"b-1?^"}},
		{name: "shields share one home per chunk across regions", requester: other7, chunk: 7,
			want: []string{home7 + "?^"}},
		{name: "an edge is sent to its region first", requester: "", region: "b", chunk: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := cachenodeLocate(r, tt.requester, tt.chunk, 1)
			if tt.requester == "" {
				req = &trackerv1.LocateRequest{Root: r, FirstChunk: tt.chunk, ChunkCount: 1, Region: tt.region,
					Roles: []trackerv1.Role{cachenode}, IncludeNonHolders: true, MaxSources: 3}
			}
			got := locate(t, req)
			if tt.requester == "" {
				for _, id := range got {
					if id[0] != tt.region[0] {
						t.Fatalf("edge in region %s: %v, want only its region's cachenodes", tt.region, got)
					}
				}
				return
			}
			if len(got) < len(tt.want) || !slices.Equal(got[:len(tt.want)], tt.want) {
				t.Fatalf("%s asks for chunk %d: %v, want it to start with %v", tt.requester, tt.chunk, got, tt.want)
			}
		})
	}

	t.Run("homes are per tier, with stand-ins in the same order for everyone", func(t *testing.T) {
		want := rank.Relays(key(7), nil, []string{"t-1", "t-2"}, "t-1", maxRelays)
		got := locate(t, cachenodeLocate(r, "t-1", 7, 1))
		for i, id := range want {
			if got[i] != id+"?^" {
				t.Fatalf("t-1 asks for chunk 7: %v, want relays %v from its own tier", got, want)
			}
		}
		for _, id := range got {
			if id[0] == 'a' || id[0] == 'b' {
				if id[len(id)-1] == '^' {
					t.Fatalf("t-1 relays through %s, a node of another tier: %v", id, got)
				}
			}
		}
	})
	t.Run("a region with its shield lost elects a stand-in", func(t *testing.T) {
		// a-2 asking: after a-1 comes the region's rendezvous order, cut at a-2.
		want := rank.Relays(key(6), []string{"a-1"}, []string{"a-1", "a-2", "a-3"}, "a-2", maxRelays)
		got := locate(t, cachenodeLocate(r, "a-2", 6, 1))
		for i, id := range want {
			if i >= len(got) || got[i] != id+"?^" {
				t.Fatalf("a-2 asks for chunk 6: %v, want relays %v", got, want)
			}
		}
	})
}
