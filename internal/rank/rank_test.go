package rank

import (
	"fmt"
	"slices"
	"testing"
)

func ids(c []Candidate) []string {
	out := make([]string, len(c))
	for i := range c {
		out[i] = c[i].ID
	}
	return out
}

func TestRankOrder(t *testing.T) {
	key := ChunkKey(make([]byte, 32), 7)
	// home is the id the hash prefers for key among a and b, other the one
	// it does not: tests where only the hash decides use them.
	home := Home(key, []string{"a", "b"})
	other := "a"
	if home == "a" {
		other = "b"
	}
	tests := []struct {
		name string
		in   []Candidate
		want []string
	}{
		{
			name: "holder before non-holder",
			in:   []Candidate{{ID: "a", Rate: 1e9}, {ID: "b", Holds: true, Rate: 1e3}},
			want: []string{"b", "a"},
		},
		{
			name: "healthy before probation",
			in:   []Candidate{{ID: "a", Holds: true, Probation: true, Rate: 1e9}, {ID: "b", Holds: true, Rate: 1e3}},
			want: []string{"b", "a"},
		},
		{
			name: "holder on probation before healthy non-holder",
			in:   []Candidate{{ID: "a", Rate: 1e9}, {ID: "b", Holds: true, Probation: true}},
			want: []string{"b", "a"},
		},
		{
			name: "cachenode holder before a faster origin",
			in:   []Candidate{{ID: "o", Holds: true, Origin: true, Rate: 1e9}, {ID: "a", Holds: true, Rate: 1e6, Load: 40}},
			want: []string{"a", "o"},
		},
		{
			name: "healthy origin before a cachenode on probation",
			in:   []Candidate{{ID: "a", Holds: true, Probation: true}, {ID: "o", Holds: true, Origin: true}},
			want: []string{"o", "a"},
		},
		{
			name: "faster bucket first",
			in:   []Candidate{{ID: "a", Holds: true, Rate: 10e6}, {ID: "b", Holds: true, Rate: 100e6}},
			want: []string{"b", "a"},
		},
		{
			name: "rate before load",
			in:   []Candidate{{ID: "a", Holds: true, Rate: 10e6}, {ID: "b", Holds: true, Rate: 100e6, Load: 50}},
			want: []string{"b", "a"},
		},
		{
			name: "same rate bucket: less loaded first",
			in:   []Candidate{{ID: "a", Holds: true, Rate: 100e6, Load: 9}, {ID: "b", Holds: true, Rate: 101e6, Load: 1}},
			want: []string{"b", "a"},
		},
		{
			name: "same buckets: home wins",
			in:   []Candidate{{ID: other, Holds: true, Rate: 100e6, Load: 3}, {ID: home, Holds: true, Rate: 101e6, Load: 2}},
			want: []string{home, other},
		},
		{
			name: "nothing known: home wins",
			in:   []Candidate{{ID: other}, {ID: home}},
			want: []string{home, other},
		},
		{
			name: "unknown rate is middling",
			in: []Candidate{
				{ID: "slow", Holds: true, Rate: 1e3},
				{ID: "new", Holds: true},
				{ID: "mid", Holds: true, Rate: 1e6},
				{ID: "fast", Holds: true, Rate: 1e9},
			},
			// The median known bucket is mid's, so new ties with mid on rate.
			want: func() []string {
				if Home(key, []string{"new", "mid"}) == "new" {
					return []string{"fast", "new", "mid", "slow"}
				}
				return []string{"fast", "mid", "new", "slow"}
			}(),
		},
		{
			name: "single",
			in:   []Candidate{{ID: "a"}},
			want: []string{"a"},
		},
		{
			name: "empty",
			in:   nil,
			want: []string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := slices.Clone(tt.in)
			Rank(key, c)
			if got := ids(c); !slices.Equal(got, tt.want) {
				t.Errorf("Rank = %v, want %v", got, tt.want)
			}
		})
	}
}

// Two edges that rank independently with the same view pick the same home,
// whatever order they list the candidates in.
func TestRankConverges(t *testing.T) {
	root := []byte("0123456789abcdef0123456789abcdef")
	base := []Candidate{
		{ID: "cache-1", Holds: true, Rate: 50e6, Load: 2},
		{ID: "cache-2", Holds: true, Rate: 60e6, Load: 3},
		{ID: "cache-3", Holds: true, Rate: 40e6, Load: 2},
		{ID: "cache-4", Holds: false, Rate: 55e6},
		{ID: "origin", Holds: true, Rate: 0, Load: 1},
	}
	for chunk := uint32(0); chunk < 64; chunk++ {
		key := ChunkKey(root, chunk)
		a := slices.Clone(base)
		b := slices.Clone(base)
		slices.Reverse(b)
		Rank(key, a)
		Rank(key, b)
		if !slices.Equal(ids(a), ids(b)) {
			t.Fatalf("chunk %d: rankings differ: %v vs %v", chunk, ids(a), ids(b))
		}
	}
}

// With equal candidates the home node spreads chunks evenly over nodes.
func TestRankSpreads(t *testing.T) {
	tests := []struct {
		nodes, chunks int
	}{
		{2, 4000},
		{4, 8000},
		{8, 16000},
		{16, 32000},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.nodes), func(t *testing.T) {
			root := make([]byte, 32)
			root[0] = byte(tt.nodes)
			base := make([]Candidate, tt.nodes)
			for i := range base {
				base[i] = Candidate{ID: fmt.Sprintf("cache-%d", i), Holds: true}
			}
			count := map[string]int{}
			for chunk := 0; chunk < tt.chunks; chunk++ {
				c := slices.Clone(base)
				Rank(ChunkKey(root, uint32(chunk)), c)
				count[c[0].ID]++
			}
			want := tt.chunks / tt.nodes
			for _, cand := range base {
				got := count[cand.ID]
				// ±15% is > 6 standard deviations at these sizes.
				if got < want*85/100 || got > want*115/100 {
					t.Errorf("%s is home of %d chunks, want about %d (all: %v)", cand.ID, got, want, count)
				}
			}
		})
	}
}

// Removing a node only moves the chunks it was home of.
func TestRankMinimalDisruption(t *testing.T) {
	root := make([]byte, 32)
	all := []string{"a", "b", "c", "d", "e"}
	for chunk := uint32(0); chunk < 1000; chunk++ {
		key := ChunkKey(root, chunk)
		before := Home(key, all)
		after := Home(key, []string{"a", "b", "d", "e"})
		if before != "c" && before != after {
			t.Fatalf("chunk %d moved from %s to %s when c left", chunk, before, after)
		}
	}
}

func TestChunkKey(t *testing.T) {
	k := ChunkKey([]byte{1, 2}, 0x01020304)
	if want := []byte{1, 2, 1, 2, 3, 4}; !slices.Equal(k, want) {
		t.Errorf("ChunkKey = %v, want %v", k, want)
	}
}

func BenchmarkRank(b *testing.B) {
	root := make([]byte, 32)
	base := make([]Candidate, 32)
	for i := range base {
		base[i] = Candidate{ID: fmt.Sprintf("cache-%d", i), Holds: i%2 == 0, Rate: float64(i) * 1e6, Load: uint32(i % 5)}
	}
	c := make([]Candidate, len(base))
	for i := 0; b.Loop(); i++ {
		copy(c, base)
		Rank(ChunkKey(root, uint32(i)), c)
	}
}
