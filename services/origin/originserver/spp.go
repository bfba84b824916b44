package originserver

import (
	"context"
	"fmt"
	"io"
	"os"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/spp"
	"github.com/p2pd/p2pd/internal/telemetry"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// GetManifest implements SPP: the manifest of a published file by root or
// name.
func (s *Server) GetManifest(_ context.Context, req *sppv1.GetManifestRequest) (*sppv1.GetManifestResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var e *entry
	switch f := req.File.(type) {
	case *sppv1.GetManifestRequest_Root:
		root, err := manifest.DigestFromBytes(f.Root)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "root: %v", err)
		}
		e = s.byRoot[root]
	case *sppv1.GetManifestRequest_Name:
		e = s.byName[f.Name]
	default:
		return nil, status.Error(codes.InvalidArgument, "root or name required")
	}
	if e == nil {
		return nil, status.Error(codes.NotFound, "file not published by this origin")
	}
	return &sppv1.GetManifestResponse{Manifest: e.m.ToProto()}, nil
}

// Fetch implements SPP: streams the requested chunks straight from the
// media file. Each chunk is checked before it is sent, against the CRC32C
// recorded when the file was hashed for publishing (manifest.VerifyLocal):
// a file changed on disk after publishing must not send bytes of a new
// version under the old root. Such a file is re-published (new root) and
// the stream fails. The receiver proves every chunk against its SHA-256
// digest, so even a change the CRC32C missed never reaches a viewer.
func (s *Server) Fetch(req *sppv1.FetchRequest, stream grpc.ServerStreamingServer[sppv1.FetchResponse]) error {
	root, err := manifest.DigestFromBytes(req.Root)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "root: %v", err)
	}
	if len(req.Chunks) > spp.MaxChunksPerFetch {
		return status.Errorf(codes.InvalidArgument, "%d chunks requested, at most %d per fetch", len(req.Chunks), spp.MaxChunksPerFetch)
	}
	s.mu.RLock()
	e := s.byRoot[root]
	s.mu.RUnlock()
	if e == nil {
		return status.Errorf(codes.NotFound, "file %s not published by this origin", root)
	}
	for _, idx := range req.Chunks {
		if int(idx) >= e.m.ChunkCount() {
			return status.Errorf(codes.InvalidArgument, "chunk %d out of range: %s has %d chunks", idx, root, e.m.ChunkCount())
		}
	}
	f, err := os.Open(e.path)
	if err != nil {
		s.stale(stream.Context(), e)
		return status.Errorf(codes.NotFound, "file %s: %v", e.m.Name, err)
	}
	defer f.Close()
	spp.Accepted(stream) // alive, whatever the chunks take (see ChunkReader.Responded)
	s.metrics.active.Inc()
	defer s.metrics.active.Dec()

	span := trace.SpanFromContext(stream.Context())
	if span.IsRecording() {
		span.SetAttributes(telemetry.KeyFile.String(e.m.Name), telemetry.KeyRoot.String(root.String()),
			telemetry.KeyRequester.String(req.Requester), telemetry.KeyChunks.Int(len(req.Chunks)))
	}
	var sent int64
	egress := s.metrics.egressRegion.WithLabelValues(regionLabel(req.Region))
	defer func() {
		if span.IsRecording() {
			span.SetAttributes(telemetry.KeyBytes.Int64(sent))
		}
	}()
	for _, idx := range req.Chunks {
		n := e.m.ChunkLen(int(idx))
		// A buffer per chunk, handed to gRPC with it (SendBuffer): it is
		// sent without a copy and comes back to the pool once written.
		bp := spp.Buffers.Get(n)
		if _, err := f.ReadAt(*bp, e.m.ChunkOffset(int(idx))); err != nil && err != io.EOF {
			spp.Buffers.Put(bp)
			return status.Errorf(codes.Internal, "read chunk %d of %s: %v", idx, e.m.Name, err)
		}
		if err := e.m.VerifyLocal(int(idx), *bp); err != nil {
			spp.Buffers.Put(bp)
			s.metrics.digestFailures.Inc()
			telemetry.DigestFailure(stream.Context(), root.String(), int(idx))
			s.stale(stream.Context(), e)
			return status.Errorf(codes.DataLoss, "chunk %d of %s changed on disk since publishing; re-publishing", idx, e.m.Name)
		}
		if err := spp.SendBuffer(stream, int(idx), bp); err != nil {
			return err
		}
		s.metrics.egress.Add(float64(n))
		egress.Add(float64(n))
		s.metrics.chunks.Inc()
		sent += int64(n)
	}
	return nil
}

// stale re-publishes a file whose bytes no longer match its manifest, in
// the background so the failing stream ends at once.
func (s *Server) stale(ctx context.Context, e *entry) {
	go func() {
		ctx := context.WithoutCancel(ctx)
		if _, err := os.Lstat(e.path); err != nil {
			if err := s.Unpublish(ctx, e.m.Name); err != nil {
				s.log.Warn("unpublish vanished file", "name", e.m.Name, "err", err)
			}
			return
		}
		if _, err := s.publish(ctx, e.m.Name, e.path, true); err != nil {
			s.log.Warn(fmt.Sprintf("re-publish changed file %s", e.m.Name), "err", err)
		}
	}()
}
