package trackerserver

import (
	"context"
	"math"

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
// first; with include_non_holders, cachenodes that would fetch the chunk
// follow (never origins: an origin serves only what it holds). The
// requester is never a source of its own, and without PeerSharing a
// cachenode is sent to origins only.
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
		fileChunks uint32
		known      bool
		nodes      []*trackerv1.Node
		held       []*bitmap.Bitmap
	)
	s.idx.read(func(st *state) {
		for _, f := range st.byRoot[root] {
			fileChunks, known = f.ChunkCount, true
			break
		}
		allowed := s.sourceRoles(req.Roles, st.nodes[req.Requester].node)
		for id, e := range st.nodes {
			if id == req.Requester || !allowed[e.node.Role] || e.node.GrpcAddr == "" {
				continue
			}
			nodes = append(nodes, e.node)
			held = append(held, st.have[root][id])
		}
	})
	if known && end > uint64(fileChunks) {
		return nil, status.Errorf(codes.OutOfRange, "locate %s: chunks [%d, %d) beyond the file's %d chunks", root, req.FirstChunk, end, fileChunks)
	}

	base := s.candidates(nodes)
	resp := &trackerv1.LocateResponse{Chunks: make([]*trackerv1.ChunkSources, req.ChunkCount)}
	where := map[string]uint32{} // node id -> index in resp.Nodes
	byID := make(map[string]*trackerv1.Node, len(nodes))
	for _, n := range nodes {
		byID[n.Id] = n
	}
	cands := make([]rank.Candidate, 0, len(nodes))
	for i := range resp.Chunks {
		chunk := req.FirstChunk + uint32(i)
		cands = cands[:0]
		for j, n := range nodes {
			holds := held[j] != nil && held[j].Has(int(chunk))
			if !holds && (!req.IncludeNonHolders || n.Role != trackerv1.Role_ROLE_CACHENODE) {
				continue
			}
			c := base[j]
			c.Holds = holds
			cands = append(cands, c)
		}
		rank.Rank(rank.ChunkKey(root[:], chunk), cands)
		cs := &trackerv1.ChunkSources{}
		for _, c := range cands[:min(len(cands), int(maxSources))] {
			k, ok := where[c.ID]
			if !ok {
				k = uint32(len(resp.Nodes))
				where[c.ID] = k
				resp.Nodes = append(resp.Nodes, byID[c.ID])
			}
			cs.NodeIndex = append(cs.NodeIndex, k)
			cs.Held = append(cs.Held, c.Holds)
		}
		resp.Chunks[i] = cs
	}
	return resp, nil
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
	if !s.cfg.PeerSharing && requester.GetRole() == trackerv1.Role_ROLE_CACHENODE {
		allowed = map[trackerv1.Role]bool{trackerv1.Role_ROLE_ORIGIN: allowed[trackerv1.Role_ROLE_ORIGIN]}
	}
	return allowed
}
