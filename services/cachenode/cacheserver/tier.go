package cacheserver

import (
	"cmp"
	"slices"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/source"
	"github.com/prometheus/client_golang/prometheus"
)

// Tiers and regions: where a miss climbs.
//
// A cachenode's near peers are the cachenodes of its own tier: same region
// (Config.Region) and, in a p2pd tree, same parent (Config.Parent). A
// miss is fetched from near peers that hold the chunk first. Then, in the
// services deployment, through the chunk's home in the region (a shield
// when the region has one; the tracker lists the next one to take over
// after it); in a p2pd tree, from the parent, then the grandparent, and so
// on. Only then from holders in other regions or tiers, and last from the
// origin. So a region, or the children of one parent, ask upstream for a
// chunk about once, and a node never goes to the origin while a node above
// it answers.

// Parent is a cache above this one in a p2pd tree.
type Parent struct {
	ID   string
	Addr string // where it serves SPP
}

// Source classes, best first. Relays and parents are ordered among
// themselves (the k-th relay or parent is class+k), so a chunk goes to
// the next one only when the one before failed it.
const (
	classPeer   class = 0    // a near peer cachenode that holds the chunk
	classRelay  class = 100  // the chunk's home in the tier, then its stand-ins
	classParent class = 200  // the cache above, then the one above it ...
	classFar    class = 300  // a holder in another region or tier
	classOrigin class = 1000 // the origin: holds everything, costs egress
)

// Metric label values of the sources only a tree or a region has.
const (
	sourceParent = "parent"
	sourceRelay  = "relay"
	sourceFar    = "far"
)

// near reports whether src is in this node's tier: same region and parent.
func (s *base) near(src source.Source) bool {
	return src.Region == s.cfg.Region && src.Parent == s.cfg.Parent
}

// classify places src, one of a chunk's sources in the tracker's order,
// among this node's sources; ok is false when it is of no use (a peer
// that neither holds the chunk nor relays it). relays counts the relays
// placed so far.
func (s *base) classify(src source.Source, relays *int) (u upstream, ok bool) {
	u = upstream{Source: src, label: sourcePeer, class: classPeer, tier: sourcePeer}
	switch {
	case src.Origin():
		u.label, u.class, u.tier = sourceOrigin, classOrigin, sourceOrigin
	case src.Relay:
		u.class, u.tier = classRelay+class(*relays), sourceRelay
		*relays++
	case !src.Held:
		return u, false
	case !s.near(src):
		u.class, u.tier = classFar, sourceFar
	}
	return u, true
}

// mayRelay reports whether the misses of a request may be fetched through
// a relay. A relay request is served without relaying further, except by
// a shield for a node of its own region: shields share one home per chunk
// across regions, so the origin sends a chunk about once in all.
func (s *base) mayRelay(relayed bool, region string) bool {
	return !relayed || (s.cfg.Shield && region == s.cfg.Region)
}

// withParents adds this node's parents to a chunk's sources and orders
// them by class, best first (a job fetches from the class of its first
// source that has not failed); a parent listed as a holder is asked as a
// parent (it fetches what it misses).
func (s *base) withParents(srcs []upstream) []upstream {
	for d, p := range s.cfg.Parents {
		for i := range srcs {
			if srcs[i].ID == p.ID {
				srcs = append(srcs[:i], srcs[i+1:]...)
				break
			}
		}
		srcs = append(srcs, upstream{
			Source: source.Source{ID: p.ID, Addr: p.Addr, Role: trackerv1.Role_ROLE_CACHENODE, Region: s.cfg.Region},
			label:  sourceParent, class: classParent + class(d), tier: sourceParent,
		})
	}
	slices.SortStableFunc(srcs, func(a, b upstream) int { return cmp.Compare(a.class, b.class) })
	return srcs
}

// fetchesThrough reports whether src is asked to fetch what it misses
// (a relay or a parent) rather than to send only what it holds.
func (src upstream) fetchesThrough() bool {
	return src.class >= classRelay && src.class < classFar
}

// tierMetrics count fetched bytes by where they crossed: the source's
// region and tier, and this node's region.
type tierMetrics struct {
	bytes *prometheus.CounterVec
}

func newTierMetrics(reg prometheus.Registerer) *tierMetrics {
	m := &tierMetrics{bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "p2pd_cachenode_fetched_region_bytes_total",
		Help: "Verified chunk bytes fetched on a miss, by the source's region, this node's region, and the source's tier (peer: a near peer; relay: the region's home or shield; parent: a cache above in a p2pd tree; far: another region or tier; origin).",
	}, []string{"source_region", "destination_region", "tier"})}
	if reg != nil {
		reg.MustRegister(m.bytes)
	}
	return m
}

func (m *tierMetrics) add(src upstream, dest string, n int) {
	m.bytes.WithLabelValues(src.Region, dest, src.tier).Add(float64(n))
}
