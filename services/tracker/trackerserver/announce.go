package trackerserver

import (
	"context"
	"fmt"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/bitmap"
	"github.com/p2pd/p2pd/internal/manifest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Announce replaces the node's bitmaps for the given files in one etcd
// transaction, every record attached to the node's lease. An empty bitmap
// (or one with no bit set) deletes the node's record for that file.
func (s *Server) Announce(ctx context.Context, req *trackerv1.AnnounceRequest) (*trackerv1.AnnounceResponse, error) {
	if err := checkNodeID(req.NodeId); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "announce: %v", err)
	}
	ops, err := s.announceOps(req)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "announce %s: %v", req.NodeId, err)
	}
	if _, err := s.checkLease(ctx, "announce", req.NodeId, req.LeaseId, req.Secret); err != nil {
		return nil, err
	}
	if len(ops) == 0 {
		return &trackerv1.AnnounceResponse{}, nil
	}
	ectx, cancel := s.etcdCtx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ectx).Then(ops...).Commit()
	if err != nil {
		return nil, etcdError(err, "announce %s: write %d holdings", req.NodeId, len(ops))
	}
	s.afterWrite(ctx, resp.Header.Revision)
	return &trackerv1.AnnounceResponse{}, nil
}

// announceOps validates an Announce and returns its etcd operations.
func (s *Server) announceOps(req *trackerv1.AnnounceRequest) ([]clientv3.Op, error) {
	if n := len(req.Haves); n > s.cfg.MaxHavesPerAnnounce {
		return nil, fmt.Errorf("%d haves in one call, at most %d allowed; split them", n, s.cfg.MaxHavesPerAnnounce)
	}
	total := 0
	for _, h := range req.Haves {
		total += len(h.GetBitmap())
	}
	if total > s.cfg.MaxAnnounceBytes {
		return nil, fmt.Errorf("bitmaps total %d bytes, at most %d allowed in one call; split them", total, s.cfg.MaxAnnounceBytes)
	}
	lease := clientv3.WithLease(clientv3.LeaseID(req.LeaseId))
	seen := map[manifest.Digest]bool{}
	ops := make([]clientv3.Op, 0, len(req.Haves))
	for i, h := range req.Haves {
		root, err := manifest.DigestFromBytes(h.GetRoot())
		if err != nil {
			return nil, fmt.Errorf("have %d: root: %w", i, err)
		}
		if seen[root] {
			return nil, fmt.Errorf("have %d: root %s given twice", i, root)
		}
		seen[root] = true
		key := s.keys.have(root, req.NodeId)
		if len(h.GetBitmap()) == 0 {
			ops = append(ops, clientv3.OpDelete(key))
			continue
		}
		if h.ChunkCount == 0 || h.ChunkCount > s.cfg.MaxChunkCount {
			return nil, fmt.Errorf("have %d (root %s): chunk_count %d not in [1, %d]", i, root, h.ChunkCount, s.cfg.MaxChunkCount)
		}
		b, err := bitmap.Decode(h.Bitmap, int(h.ChunkCount))
		if err != nil {
			return nil, fmt.Errorf("have %d (root %s): %w", i, root, err)
		}
		if b.Count() == 0 {
			ops = append(ops, clientv3.OpDelete(key))
			continue
		}
		val, err := proto.Marshal(&trackerv1.Have{Root: root[:], ChunkCount: h.ChunkCount, Bitmap: h.Bitmap})
		if err != nil {
			return nil, fmt.Errorf("have %d (root %s): marshal: %w", i, root, err)
		}
		ops = append(ops, clientv3.OpPut(key, string(val), lease))
	}
	return ops, nil
}
