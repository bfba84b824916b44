package adminserver

import (
	"context"
	"slices"
	"strings"
	"time"

	adminv1 "github.com/p2pd/p2pd/gen/admin/v1"
	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// nodeView is one ListNodes answer from the tracker.
type nodeView struct {
	nodes    []*trackerv1.Node
	holdings map[string]*trackerv1.NodeHoldings // by node id
}

// listNodes asks the tracker for the live nodes and their holdings. A
// lone origin (no tracker) has none.
func (s *Server) listNodes(ctx context.Context) (nodeView, error) {
	if s.tracker == nil {
		return nodeView{}, nil
	}
	tctx, cancel := context.WithTimeout(ctx, s.cfg.TrackerTimeout)
	defer cancel()
	resp, err := s.tracker.ListNodes(tctx, &trackerv1.ListNodesRequest{})
	if err != nil {
		return nodeView{}, errTracker(err, "list nodes")
	}
	return nodeView{nodes: resp.Nodes, holdings: resp.Holdings}, nil
}

// holders lists the nodes holding chunks of root, in node id order.
func (v nodeView) holders(root manifest.Digest) []*adminv1.Holder {
	key := root.String()
	var out []*adminv1.Holder
	for _, n := range v.nodes {
		if c := v.holdings[n.Id].GetChunksByRoot()[key]; c > 0 {
			out = append(out, &adminv1.Holder{NodeId: n.Id, Role: roleName(n.Role), Chunks: c})
		}
	}
	slices.SortFunc(out, func(a, b *adminv1.Holder) int { return strings.Compare(a.NodeId, b.NodeId) })
	return out
}

// roleName is the lower-case role name the API uses.
func roleName(r trackerv1.Role) string {
	switch r {
	case trackerv1.Role_ROLE_ORIGIN:
		return "origin"
	case trackerv1.Role_ROLE_CACHENODE:
		return "cachenode"
	case trackerv1.Role_ROLE_EDGE:
		return "edge"
	}
	return "unknown"
}

// ListNodes lists the live nodes with what they hold.
func (s *Server) ListNodes(ctx context.Context, _ *adminv1.ListNodesRequest) (*adminv1.ListNodesResponse, error) {
	v, err := s.listNodes(ctx)
	if err != nil {
		return nil, err
	}
	resp := &adminv1.ListNodesResponse{Nodes: make([]*adminv1.Node, 0, len(v.nodes))}
	for _, n := range v.nodes {
		an := &adminv1.Node{
			Id:            n.Id,
			Role:          roleName(n.Role),
			GrpcAddr:      n.GrpcAddr,
			HttpAddr:      n.HttpAddr,
			Load:          n.Load,
			HeldBytes:     n.HeldBytes,
			CapacityBytes: n.CapacityBytes,
			OpsAddr:       n.OpsAddr,
			Version:       n.Version,
		}
		if n.UpSinceUnixNano != 0 {
			an.UpSince = timestamppb.New(time.Unix(0, n.UpSinceUnixNano))
		}
		for _, c := range v.holdings[n.Id].GetChunksByRoot() {
			if c > 0 {
				an.Files++
				an.Chunks += uint64(c)
			}
		}
		resp.Nodes = append(resp.Nodes, an)
	}
	rates := s.rates(ctx)
	for _, n := range resp.Nodes {
		n.RateBytesPerSecond = rates[n.Id]
	}
	slices.SortFunc(resp.Nodes, func(a, b *adminv1.Node) int { return strings.Compare(a.Id, b.Id) })
	return resp, nil
}

// rates returns the transfer rates the tracker has measured from nodes,
// in bytes/s by node id. ListNodes does not carry them but a Locate answer
// does for every node it lists, so ask about the first chunk of a published
// file with every cachenode included. Rates are a hint: without them the
// node list is still worth answering.
func (s *Server) rates(ctx context.Context) map[string]float64 {
	out := map[string]float64{}
	var m *manifest.Manifest
	for _, f := range s.origin.Files() {
		if f.ChunkCount() > 0 {
			m = f
			break
		}
	}
	if m == nil || s.tracker == nil {
		return out
	}
	tctx, cancel := context.WithTimeout(ctx, s.cfg.TrackerTimeout)
	defer cancel()
	resp, err := s.tracker.Locate(tctx, &trackerv1.LocateRequest{
		Root:              m.Root[:],
		ChunkCount:        1,
		Roles:             []trackerv1.Role{trackerv1.Role_ROLE_ORIGIN, trackerv1.Role_ROLE_CACHENODE},
		IncludeNonHolders: true,
		MaxSources:        1 << 16, // the tracker caps it
	})
	if err != nil {
		s.log.Warn("locate for node rates", "err", err)
		return out
	}
	for i, n := range resp.Nodes {
		if i < len(resp.Rates) {
			out[n.Id] = resp.Rates[i]
		}
	}
	return out
}
