// Package rank is the source-ranking policy: given the nodes that could
// serve a chunk, which to ask first. It is pure (no I/O, no clock of its
// own) so trackers, tests and experiments all rank the same way.
//
// The order, most significant first:
//  0. nodes in the requester's region (Near) before nodes elsewhere: the
//     links between regions are the long, dear ones;
//  1. nodes that hold the chunk before nodes that would have to fetch it;
//  2. healthy nodes before nodes on probation after recent failures;
//  3. cachenodes before origins: a peer that holds the chunk spares the
//     origin, whose egress is what the swarm exists to save;
//  4. faster nodes, by measured rate in coarse (power of two) buckets;
//  5. less loaded nodes, by active streams in coarse buckets;
//  6. the chunk's rendezvous-hash "home": highest hash of (node, chunk).
//
// Rates and loads are bucketed so that small, noisy differences do not
// override the home node: independent edges asking for the same chunk then
// converge on the same cachenode, which fetches it once, instead of the
// chunk being scattered over every cache.
package rank

import (
	"cmp"
	"encoding/binary"
	"math"
	"math/bits"
	"slices"
)

// Candidate is one node that could serve a chunk.
type Candidate struct {
	ID string
	// Holds tells whether the node holds the chunk already.
	Holds bool
	// Rate is the node's measured transfer rate in bytes/s (an EWMA); 0
	// means unknown.
	Rate float64
	// Load is the number of streams the node is serving.
	Load uint32
	// Probation is set while the node is backing off after failures.
	Probation bool
	// Origin marks a node of last resort: it holds everything, and every
	// byte it sends is what the CDN is meant to save.
	Origin bool
	// Near marks a node in the requester's region.
	Near bool
}

// ChunkKey returns the rendezvous key of chunk index of the file with the
// given root: the root followed by the index, big-endian.
func ChunkKey(root []byte, index uint32) []byte {
	k := make([]byte, len(root)+4)
	copy(k, root)
	binary.BigEndian.PutUint32(k[len(root):], index)
	return k
}

// Rank sorts c in place, best first, for the chunk identified by key (see
// ChunkKey). Equal inputs give equal orders on every machine.
func Rank(key []byte, c []Candidate) {
	if len(c) < 2 {
		return
	}
	unknown := unknownRateBucket(c)
	es := make([]entry, len(c))
	for i := range c {
		rb := unknown
		if c[i].Rate > 0 {
			rb = rateBucket(c[i].Rate)
		}
		es[i] = entry{c: c[i], rate: rb, load: bits.Len32(c[i].Load), hash: Score(c[i].ID, key)}
	}
	slices.SortFunc(es, compare)
	for i := range es {
		c[i] = es[i].c
	}
}

type entry struct {
	c    Candidate
	rate int // higher is better
	load int // lower is better
	hash uint64
}

func compare(a, b entry) int {
	if a.c.Near != b.c.Near {
		return boolFirst(a.c.Near)
	}
	if a.c.Holds != b.c.Holds {
		return boolFirst(a.c.Holds)
	}
	if a.c.Probation != b.c.Probation {
		return boolFirst(!a.c.Probation)
	}
	if a.c.Origin != b.c.Origin {
		return boolFirst(!a.c.Origin)
	}
	if r := cmp.Compare(b.rate, a.rate); r != 0 {
		return r
	}
	if r := cmp.Compare(a.load, b.load); r != 0 {
		return r
	}
	if r := cmp.Compare(b.hash, a.hash); r != 0 {
		return r
	}
	return cmp.Compare(a.c.ID, b.c.ID)
}

// boolFirst orders the entry for which first is true before the other.
func boolFirst(first bool) int {
	if first {
		return -1
	}
	return 1
}

// rateBucket puts rates within a factor of two of each other together.
func rateBucket(rate float64) int {
	if rate < 1 {
		return 0
	}
	return 1 + int(math.Log2(rate))
}

// unknownRateBucket is the bucket of a node never measured: the median of
// the measured ones. Ranking unknown nodes last would starve new nodes of
// the very traffic that measures them; ranking them first would send every
// request to a node that may be slow.
func unknownRateBucket(c []Candidate) int {
	var known []int
	for i := range c {
		if c[i].Rate > 0 {
			known = append(known, rateBucket(c[i].Rate))
		}
	}
	if len(known) == 0 {
		return 0
	}
	slices.Sort(known)
	return known[len(known)/2]
}

// Score is the rendezvous (highest random weight) hash of node id for key:
// FNV-1a 64 over id, a separator and key, then a 64-bit finaliser, since
// FNV's high bits alone mix poorly for keys differing only at the end.
func Score(id string, key []byte) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= prime
	}
	h ^= 0xff // separator: 0xff never occurs in UTF-8, so bytes cannot shift between id and key
	h *= prime
	for _, b := range key {
		h ^= uint64(b)
		h *= prime
	}
	// splitmix64 finaliser.
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// Home returns the id with the highest Score for key: the node every ranker
// prefers for the chunk when nothing else tells the candidates apart.
func Home(key []byte, ids []string) string {
	var best string
	var bestScore uint64
	for i, id := range ids {
		s := Score(id, key)
		if i == 0 || s > bestScore || (s == bestScore && id < best) {
			best, bestScore = id, s
		}
	}
	return best
}

// Relays returns the nodes a requester fetches a chunk through, in the
// order to try them: the preferred ones (its region's shields) by Score
// for key, then the others by Score. The list ends before self, since from
// there on the requester is the one to fetch the chunk itself, and holds
// at most max nodes. Every requester of the tier computes the same order,
// so when the first relay is lost they all move to the same next one and
// the chunk is still fetched once.
func Relays(key []byte, preferred, others []string, self string, max int) []string {
	var out []string
	for _, ids := range [][]string{preferred, others} {
		ids = slices.Clone(ids)
		slices.SortFunc(ids, func(a, b string) int {
			if r := cmp.Compare(Score(b, key), Score(a, key)); r != 0 {
				return r
			}
			return cmp.Compare(a, b)
		})
		for _, id := range ids {
			if id == self || len(out) == max {
				return out
			}
			if !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
	}
	return out
}
