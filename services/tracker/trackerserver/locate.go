package trackerserver

import (
	"context"
	"math"
	"slices"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/bitmap"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/rank"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// defaultSourceRoles are the roles that serve chunks; edges do not.
var defaultSourceRoles = []trackerv1.Role{trackerv1.Role_ROLE_ORIGIN, trackerv1.Role_ROLE_CACHENODE}

// Locate ranks, for each chunk of the run, the nodes to ask. Holders come
// first, cachenodes before origins; with include_non_holders, cachenodes
// that would fetch the chunk follow (never origins: an origin serves only
// what it holds). The requester is never a source of its own, and without
// PeerSharing a cachenode is sent to origins only.
//
// With allow_relay, a cachenode asking for a chunk no other cachenode
// holds is sent to the chunk's home first: the rendezvous-hash choice
// among the healthy cachenodes and the requester itself. Every cachenode
// missing the chunk at the same moment is sent to the same home, the home
// (told nothing but its origins) fetches it once, and the origin sends
// each chunk about once however many caches start a file together. No
// announcement has to travel first, so there is no race to lose.
func (s *Server) Locate(ctx context.Context, req *trackerv1.LocateRequest) (*trackerv1.LocateResponse, error) {
	root, err := manifest.DigestFromBytes(req.Root)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "locate: root: %v", err)
	}
	if req.ChunkCount == 0 || req.ChunkCount > s.cfg.MaxLocateChunks {
		return nil, status.Errorf(codes.InvalidArgument, "locate %s: chunk_count %d not in [1, %d]", root, req.ChunkCount, s.cfg.MaxLocateChunks)
	}
	end := uint64(req.FirstChunk) + uint64(req.ChunkCount)
	if end > math.MaxUint32+1 {
		return nil, status.Errorf(codes.InvalidArgument, "locate %s: chunks [%d, %d) overflow chunk indices", root, req.FirstChunk, end)
	}
	for _, r := range req.Roles {
		if _, ok := trackerv1.Role_name[int32(r)]; !ok || r == trackerv1.Role_ROLE_UNSPECIFIED {
			return nil, status.Errorf(codes.InvalidArgument, "locate %s: unknown role %v", root, r)
		}
	}
	maxSources := req.MaxSources
	if maxSources == 0 {
		maxSources = s.cfg.DefaultMaxSources
	}
	maxSources = min(maxSources, s.cfg.MaxSourcesCap)
	if err := s.ready(ctx); err != nil {
		return nil, err
	}

	var (
		fileChunks    uint32
		known         bool
		nodes         []*trackerv1.Node
		held          []*bitmap.Bitmap
		relay         bool
		requesterRole trackerv1.Role
		isShield      bool
		homes         []string // cachenodes that may be a chunk's home
		shields       []string // those of them to try first: the region's shields
		region        = req.Region
	)
	s.idx.read(func(st *state) {
		for _, f := range st.byRoot[root] {
			fileChunks, known = f.ChunkCount, true
			break
		}
		requester := st.nodes[req.Requester].node
		if region == "" {
			region = requester.GetRegion()
		}
		requesterRole = requester.GetRole()
		allowed := s.sourceRoles(req.Roles, requester)
		relay = req.AllowRelay && requester.GetRole() == trackerv1.Role_ROLE_CACHENODE && allowed[trackerv1.Role_ROLE_CACHENODE]
		isShield = requester.GetShield()
		for id, e := range st.nodes {
			if id == req.Requester || !allowed[e.node.Role] || e.node.GrpcAddr == "" {
				continue
			}
			nodes = append(nodes, e.node)
			held = append(held, st.have[root][id])
			if !relay || e.node.Role != trackerv1.Role_ROLE_CACHENODE {
				continue
			}
			switch {
			case isShield:
				// Shields of every region (one tree level) share one
				// home per chunk: the origin sends it about once.
				if e.node.Shield && e.node.GetParent() == requester.GetParent() {
					homes = append(homes, id)
				}
			case sameTier(e.node, requester):
				// Homes are per tier (region and parent), its shields
				// first: each region asks its way up about once.
				homes = append(homes, id)
				if e.node.Shield {
					shields = append(shields, id)
				}
			}
		}
	})
	if s.probe != nil {
		nodes, held, homes = s.reachableOnly(nodes, held, homes, req.Requester)
	}
	if known && end > uint64(fileChunks) {
		return nil, status.Errorf(codes.OutOfRange, "locate %s: chunks [%d, %d) beyond the file's %d chunks", root, req.FirstChunk, end, fileChunks)
	}

	base := s.candidates(nodes, req.Requester)
	fromCache := requesterRole == trackerv1.Role_ROLE_CACHENODE
	for j, n := range nodes {
		base[j].Near = n.Region == region
	}
	if relay {
		sick := s.onProbation(homes)
		homes = slices.DeleteFunc(homes, func(id string) bool { return sick[id] })
		// Shields are homes: what was dropped from the homes (on
		// probation, unreachable) is dropped from them too.
		shields = slices.DeleteFunc(shields, func(id string) bool { return !slices.Contains(homes, id) })
		homes = append(homes, req.Requester)
	}
	resp := &trackerv1.LocateResponse{Chunks: make([]*trackerv1.ChunkSources, req.ChunkCount)}
	where := map[string]uint32{} // node id -> index in resp.Nodes
	byID := make(map[string]int, len(nodes))
	for j, n := range nodes {
		byID[n.Id] = j
	}
	cands := make([]rank.Candidate, 0, len(nodes)+1)
	for i := range resp.Chunks {
		chunk := req.FirstChunk + uint32(i)
		key := rank.ChunkKey(root[:], chunk)
		cands = cands[:0]
		peerHolds := false
		for j, n := range nodes {
			holds := held[j] != nil && held[j].Has(int(chunk))
			if !holds && (!req.IncludeNonHolders || n.Role != trackerv1.Role_ROLE_CACHENODE) {
				continue
			}
			// A holder elsewhere does not spare the region its way up:
			// only the region's relay (a shield) fetches from outside.
			peerHolds = peerHolds || (holds && n.Role == trackerv1.Role_ROLE_CACHENODE && (base[j].Near || isShield))
			c := base[j]
			c.Holds = holds
			// A cachenode uses only holders and relays: a near
			// non-holder must not crowd a holder elsewhere out.
			c.Near = c.Near && (holds || !fromCache)
			cands = append(cands, c)
		}
		rank.Rank(key, cands)
		var relays []string
		if relay && !peerHolds {
			relays = rank.Relays(key, shields, homes, req.Requester, maxRelays)
		}
		if len(relays) > 0 {
			// The home and its stand-ins go first: nobody near holds the
			// chunk, so the candidates are origins, holders elsewhere
			// and non-holders.
			cands = slices.DeleteFunc(cands, func(c rank.Candidate) bool { return slices.Contains(relays, c.ID) })
			for r, id := range relays {
				cands = slices.Insert(cands, r, rank.Candidate{ID: id})
			}
		}
		cs := &trackerv1.ChunkSources{}
		for r, c := range cands[:min(len(cands), int(maxSources))] {
			k, ok := where[c.ID]
			if !ok {
				k = uint32(len(resp.Nodes))
				where[c.ID] = k
				resp.Nodes = append(resp.Nodes, nodes[byID[c.ID]])
				resp.Rates = append(resp.Rates, base[byID[c.ID]].Rate)
			}
			cs.NodeIndex = append(cs.NodeIndex, k)
			cs.Held = append(cs.Held, c.Holds)
			if len(relays) > 0 {
				cs.Relay = append(cs.Relay, r < len(relays))
			}
		}
		resp.Chunks[i] = cs
	}
	annotateLocate(ctx, req, len(nodes), resp)
	return resp, nil
}

// maxRelays bounds the relays listed for a chunk: its home and the
// stand-ins that take over, in order, when the one before is lost.
const maxRelays = 3

// sameTier reports whether cachenodes a and b share a region and parent.
func sameTier(a, b *trackerv1.Node) bool {
	return a.GetRegion() == b.GetRegion() && a.GetParent() == b.GetParent()
}

// sourceRoles returns the roles a requester may be sent to.
func (s *Server) sourceRoles(asked []trackerv1.Role, requester *trackerv1.Node) map[trackerv1.Role]bool {
	if len(asked) == 0 {
		asked = defaultSourceRoles
	}
	allowed := map[trackerv1.Role]bool{}
	for _, r := range asked {
		allowed[r] = true
	}
	// Edges register so operators see them, but hold no chunks anyone
	// may fetch: they are never a source, whatever a request asks.
	delete(allowed, trackerv1.Role_ROLE_EDGE)
	if !s.cfg.PeerSharing && requester.GetRole() == trackerv1.Role_ROLE_CACHENODE {
		allowed = map[trackerv1.Role]bool{trackerv1.Role_ROLE_ORIGIN: allowed[trackerv1.Role_ROLE_ORIGIN]}
	}
	return allowed
}
