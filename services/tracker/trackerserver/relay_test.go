package trackerserver

import (
	"slices"
	"testing"
	"time"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/rank"
)

// relayed renders a Locate answer like sources, marking relays with "^".
func relayed(resp *trackerv1.LocateResponse) [][]string {
	out := sources(resp)
	for i, cs := range resp.Chunks {
		for j := range cs.Relay {
			if cs.Relay[j] {
				out[i][j] += "^"
			}
		}
	}
	return out
}

// cachenodeLocate is the Locate a cachenode sends for its misses.
func cachenodeLocate(r []byte, requester string, first, n uint32) *trackerv1.LocateRequest {
	return &trackerv1.LocateRequest{
		Root: r, FirstChunk: first, ChunkCount: n, Requester: requester,
		Roles:             []trackerv1.Role{origin, cachenode},
		IncludeNonHolders: true, MaxSources: 4, AllowRelay: true,
	}
}

func TestLocateRelaysThroughTheHome(t *testing.T) {
	f := newFixture(t)
	clk := newFakeClock()
	c, _ := f.tracker(Config{PeerSharing: true, Now: clk.now})
	r := locateSetup(f, c)
	caches := []string{"cache-1", "cache-2", "cache-3"}

	t.Run("chunks a peer holds are never relayed", func(t *testing.T) {
		resp, err := c.Locate(testCtx(t), cachenodeLocate(r, "cache-3", 0, 6))
		if err != nil {
			t.Fatal(err)
		}
		for i, srcs := range relayed(resp) {
			if len(srcs) == 0 || srcs[0] == "origin" || slices.ContainsFunc(srcs, func(s string) bool { return s[len(s)-1] == '^' }) {
				t.Errorf("chunk %d: %v, want a holding peer first and no relay", i, srcs)
			}
		}
	})

	t.Run("every cachenode is sent to the same home", func(t *testing.T) {
		for _, chunk := range []uint32{6, 7} {
			home := rank.Home(rank.ChunkKey(r, chunk), caches)
			for _, req := range caches {
				resp, err := c.Locate(testCtx(t), cachenodeLocate(r, req, chunk, 1))
				if err != nil {
					t.Fatal(err)
				}
				got := relayed(resp)[0]
				// The home, then its stand-ins up to the asker itself;
				// the home itself fetches from the origin: no cascade.
				var want []string
				for _, id := range rank.Relays(rank.ChunkKey(r, chunk), nil, caches, req, maxRelays) {
					want = append(want, id+"?^")
				}
				want = append(want, "origin")
				if (req == home) != (len(want) == 1) || (req != home && want[0] != home+"?^") {
					t.Fatalf("chunk %d asked by %s: relays %v do not start at the home %s", chunk, req, want, home)
				}
				if len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
					t.Errorf("chunk %d asked by %s: %v, want it to start with %v", chunk, req, got, want)
				}
			}
		}
	})

	t.Run("no relay unless asked for", func(t *testing.T) {
		req := cachenodeLocate(r, "cache-3", 6, 2)
		req.AllowRelay = false
		resp, err := c.Locate(testCtx(t), req)
		if err != nil {
			t.Fatal(err)
		}
		for i, cs := range resp.Chunks {
			if len(cs.Relay) != 0 || resp.Nodes[cs.NodeIndex[0]].Id != "origin" {
				t.Errorf("chunk %d: %v, want the origin first and no relay", 6+i, relayed(resp)[i])
			}
		}
		// Edges are never given relays: they fetch through cachenodes anyway.
		req = cachenodeLocate(r, "edge-1", 6, 2)
		if resp, err = c.Locate(testCtx(t), req); err != nil {
			t.Fatal(err)
		}
		for _, cs := range resp.Chunks {
			if len(cs.Relay) != 0 {
				t.Errorf("edge given a relay: %v", relayed(resp))
			}
		}
	})

	t.Run("a home on probation is passed over", func(t *testing.T) {
		chunk := uint32(6)
		home := rank.Home(rank.ChunkKey(r, chunk), caches)
		asker := "cache-1"
		if asker == home {
			asker = "cache-2"
		}
		if err := f.report(c, asker, &trackerv1.RateSample{Source: home, Failed: true}); err != nil {
			t.Fatal(err)
		}
		healthy := slices.DeleteFunc(slices.Clone(caches), func(id string) bool { return id == home })
		next := rank.Home(rank.ChunkKey(r, chunk), healthy)
		resp, err := c.Locate(testCtx(t), cachenodeLocate(r, asker, chunk, 1))
		if err != nil {
			t.Fatal(err)
		}
		got := relayed(resp)[0]
		want := "origin"
		if next != asker {
			want = next + "?^"
		}
		if got[0] != want {
			t.Errorf("with home %s on probation: %v, want %s first", home, got, want)
		}
		clk.advance(time.Minute) // probation over
	})
}

func TestLocateRatesPerRequester(t *testing.T) {
	f := newFixture(t)
	c, _ := f.tracker(Config{PeerSharing: true})
	r := locateSetup(f, c)
	// cache-3 measured cache-1 much slower than edge-1 did.
	if err := f.report(c, "cache-3", []*trackerv1.RateSample{
		{Source: "cache-1", Bytes: 5e6, DurationNanos: int64(time.Second)},
	}...); err != nil {
		t.Fatal(err)
	}
	rates := func(requester string) map[string]float64 {
		resp, err := c.Locate(testCtx(t), &trackerv1.LocateRequest{Root: r, ChunkCount: 4, Requester: requester})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Rates) != len(resp.Nodes) {
			t.Fatalf("%d rates for %d nodes", len(resp.Rates), len(resp.Nodes))
		}
		out := map[string]float64{}
		for i, n := range resp.Nodes {
			out[n.Id] = resp.Rates[i]
		}
		return out
	}
	if got := rates("cache-3")["cache-1"]; got != 5e6 {
		t.Errorf("cache-1's rate for cache-3 = %v, want its own measure 5e6", got)
	}
	if got := rates("edge-1")["cache-1"]; got != 100e6 {
		t.Errorf("cache-1's rate for edge-1 = %v, want its own measure 100e6", got)
	}
	anon := rates("")
	if got := anon["cache-1"]; got <= 5e6 || got >= 100e6 {
		t.Errorf("cache-1's rate for an anonymous requester = %v, want the average over reporters", got)
	}
	if got := anon["origin"]; got != 1e6 {
		t.Errorf("origin's rate = %v, want 1e6", got)
	}
}
