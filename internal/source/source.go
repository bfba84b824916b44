// Package source is the client side of the data plane that edges and
// cachenodes share: it turns a tracker's Locate answer into the sources
// of a chunk, best first, and fetches a file's manifest from them within
// one deadline budget, the origin last.
package source

import (
	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
)

// Source is a node to fetch from, as the tracker ranked it.
type Source struct {
	ID   string
	Addr string // gRPC host:port
	Role trackerv1.Role
	// Held: the node announced the chunk. A node that does not hold it
	// can only fetch it first (a relay, or a cachenode that fetches
	// misses).
	Held bool
	// Relay: the tracker names this non-holder the chunk's relay.
	Relay bool
	// Rate is the tracker's measured rate of the node, bytes/s; 0 unknown.
	Rate float64
	// Region and Parent place the node in the tree and the regions (see
	// tracker.v1.Node).
	Region, Parent string
}

// Origin reports whether s is an origin, which holds every published
// chunk whether or not it announced it.
func (s Source) Origin() bool { return s.Role == trackerv1.Role_ROLE_ORIGIN }

// Ranked returns the sources of chunk j of a Locate answer in the
// tracker's order (internal/rank), skipping the node self and nodes with
// no address. Which of them a caller may ask (a non-holder, say) is the
// caller's policy.
func Ranked(resp *trackerv1.LocateResponse, j int, self string) []Source {
	if resp == nil || j >= len(resp.Chunks) {
		return nil
	}
	cs := resp.Chunks[j]
	out := make([]Source, 0, len(cs.NodeIndex))
	for k, ni := range cs.NodeIndex {
		if int(ni) >= len(resp.Nodes) {
			continue
		}
		n := resp.Nodes[ni]
		if n.GrpcAddr == "" || (self != "" && n.Id == self) {
			continue
		}
		s := Source{
			ID: n.Id, Addr: n.GrpcAddr, Role: n.Role,
			Held:   k < len(cs.Held) && cs.Held[k],
			Relay:  k < len(cs.Relay) && cs.Relay[k],
			Region: n.Region, Parent: n.Parent,
		}
		if int(ni) < len(resp.Rates) {
			s.Rate = resp.Rates[ni]
		}
		out = append(out, s)
	}
	return out
}
