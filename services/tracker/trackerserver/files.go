package trackerserver

import (
	"context"
	"fmt"
	"slices"
	"strings"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// PublishFile records a published file's summary (no lease: a file stays
// published when its origin restarts).
func (s *Server) PublishFile(ctx context.Context, req *trackerv1.PublishFileRequest) (*trackerv1.PublishFileResponse, error) {
	if err := s.callerOf(ctx).mayPublish("publish"); err != nil {
		return nil, err
	}
	f := req.GetFile()
	if err := checkFile(f); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "publish: %v", err)
	}
	f = proto.Clone(f).(*trackerv1.File)
	if f.PublishedUnixNano == 0 {
		f.PublishedUnixNano = s.cfg.Now().UnixNano()
	}
	val, err := proto.Marshal(f)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "publish %s: marshal: %v", f.Name, err)
	}
	ectx, cancel := s.etcdCtx(ctx)
	defer cancel()
	resp, err := s.cli.Put(ectx, s.keys.file(f.Name), string(val))
	if err != nil {
		return nil, etcdError(err, "publish %s", f.Name)
	}
	s.afterWrite(ctx, resp.Header.Revision)
	return &trackerv1.PublishFileResponse{}, nil
}

// checkFile validates a file summary: a publishable name, a root digest,
// and a chunk count that matches size and chunk size.
func checkFile(f *trackerv1.File) error {
	if f == nil {
		return fmt.Errorf("file is missing")
	}
	if err := manifest.CheckName(f.Name); err != nil {
		return err
	}
	if _, err := manifest.DigestFromBytes(f.Root); err != nil {
		return fmt.Errorf("file %s: root: %w", f.Name, err)
	}
	if f.ChunkSize < manifest.MinChunkSize || f.ChunkSize > manifest.MaxChunkSize {
		return fmt.Errorf("file %s: chunk_size %d not in [%d, %d]", f.Name, f.ChunkSize, manifest.MinChunkSize, manifest.MaxChunkSize)
	}
	want := (f.Size + uint64(f.ChunkSize) - 1) / uint64(f.ChunkSize)
	if uint64(f.ChunkCount) != want {
		return fmt.Errorf("file %s: chunk_count %d, want %d for %d bytes in %d-byte chunks", f.Name, f.ChunkCount, want, f.Size, f.ChunkSize)
	}
	return nil
}

// UnpublishFile removes a published file; NotFound if it was not.
func (s *Server) UnpublishFile(ctx context.Context, req *trackerv1.UnpublishFileRequest) (*trackerv1.UnpublishFileResponse, error) {
	if err := s.callerOf(ctx).mayPublish("unpublish"); err != nil {
		return nil, err
	}
	if err := manifest.CheckName(req.Name); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "unpublish: %v", err)
	}
	ectx, cancel := s.etcdCtx(ctx)
	defer cancel()
	resp, err := s.cli.Delete(ectx, s.keys.file(req.Name))
	if err != nil {
		return nil, etcdError(err, "unpublish %s", req.Name)
	}
	if resp.Deleted == 0 {
		return nil, status.Errorf(codes.NotFound, "unpublish: file %s is not published", req.Name)
	}
	s.afterWrite(ctx, resp.Header.Revision)
	return &trackerv1.UnpublishFileResponse{}, nil
}

// GetFile looks up a published file by name.
func (s *Server) GetFile(ctx context.Context, req *trackerv1.GetFileRequest) (*trackerv1.GetFileResponse, error) {
	if err := manifest.CheckName(req.Name); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "get file: %v", err)
	}
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	var f *trackerv1.File
	s.idx.read(func(st *state) { f = st.files[req.Name] })
	if f == nil {
		return nil, status.Errorf(codes.NotFound, "get file: %s is not published", req.Name)
	}
	return &trackerv1.GetFileResponse{File: f}, nil
}

// ListFiles lists published files by name.
func (s *Server) ListFiles(ctx context.Context, _ *trackerv1.ListFilesRequest) (*trackerv1.ListFilesResponse, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	resp := &trackerv1.ListFilesResponse{}
	s.idx.read(func(st *state) {
		for _, f := range st.files {
			resp.Files = append(resp.Files, f)
		}
	})
	slices.SortFunc(resp.Files, func(a, b *trackerv1.File) int { return strings.Compare(a.Name, b.Name) })
	return resp, nil
}

// ListNodes lists live nodes by id, with how many chunks of each file root
// they hold.
func (s *Server) ListNodes(ctx context.Context, _ *trackerv1.ListNodesRequest) (*trackerv1.ListNodesResponse, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	resp := &trackerv1.ListNodesResponse{Holdings: map[string]*trackerv1.NodeHoldings{}}
	s.idx.read(func(st *state) {
		for _, e := range st.nodes {
			resp.Nodes = append(resp.Nodes, e.node)
		}
		for root, byNode := range st.have {
			for id, b := range byNode {
				h := resp.Holdings[id]
				if h == nil {
					h = &trackerv1.NodeHoldings{ChunksByRoot: map[string]uint32{}}
					resp.Holdings[id] = h
				}
				h.ChunksByRoot[root.String()] = uint32(b.Count())
			}
		}
	})
	slices.SortFunc(resp.Nodes, func(a, b *trackerv1.Node) int { return strings.Compare(a.Id, b.Id) })
	return resp, nil
}
