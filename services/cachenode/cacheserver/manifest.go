package cacheserver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/chunkstore"
	"github.com/p2pd/p2pd/internal/manifest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// GetManifest implements SPP: the manifest of a file by root or by
// published name, from the local store or else from a node that has it.
func (s *Server) GetManifest(ctx context.Context, req *sppv1.GetManifestRequest) (*sppv1.GetManifestResponse, error) {
	switch f := req.File.(type) {
	case *sppv1.GetManifestRequest_Root:
		root, err := manifest.DigestFromBytes(f.Root)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "root: %v", err)
		}
		m, err := s.manifest(ctx, root, true)
		if err != nil {
			return nil, manifestStatus(err)
		}
		return &sppv1.GetManifestResponse{Manifest: m.ToProto()}, nil
	case *sppv1.GetManifestRequest_Name:
		return s.manifestByName(ctx, f.Name)
	default:
		return nil, status.Error(codes.InvalidArgument, "root or name required")
	}
}

func (s *Server) manifestByName(ctx context.Context, name string) (*sppv1.GetManifestResponse, error) {
	if err := manifest.CheckName(name); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if s.tracker == nil {
		return nil, status.Errorf(codes.NotFound, "file %q: no tracker to look it up", name)
	}
	tctx, cancel := context.WithTimeout(ctx, s.cfg.RPCTimeout)
	resp, err := s.tracker.GetFile(tctx, &trackerv1.GetFileRequest{Name: name})
	cancel()
	if status.Code(err) == codes.NotFound || (err == nil && resp.File == nil) {
		return nil, status.Errorf(codes.NotFound, "file %q not published", name)
	}
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "look up file %q at tracker: %v", name, err)
	}
	root, err := manifest.DigestFromBytes(resp.File.Root)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "tracker record of %q: root: %v", name, err)
	}
	var m *manifest.Manifest
	if resp.File.Size == 0 {
		// An empty file has no chunks, so no node holds any and Locate
		// finds no source; its record says all there is to know.
		m = &manifest.Manifest{ChunkSize: int(resp.File.ChunkSize), Root: root}
		if err := m.Validate(); err != nil {
			return nil, status.Errorf(codes.Internal, "tracker record of empty file %q: %v", name, err)
		}
	} else if m, err = s.manifest(ctx, root, true); err != nil {
		return nil, manifestStatus(err)
	}
	// The same bytes may be published under several names: the record
	// asked for names this one, its type and time.
	p := m.ToProto()
	p.Name = name
	if resp.File.ContentType != "" {
		p.ContentType = resp.File.ContentType
	}
	if resp.File.ModTimeUnixNano != 0 {
		p.ModTimeUnixNano = resp.File.ModTimeUnixNano
	}
	return &sppv1.GetManifestResponse{Manifest: p}, nil
}

func manifestStatus(err error) error {
	if errors.Is(err, errUnknownFile) {
		return status.Error(codes.NotFound, err.Error())
	}
	if st, ok := status.FromError(err); ok {
		return st.Err()
	}
	return status.Error(codes.Unavailable, err.Error())
}

// manifest returns the validated manifest of root: from memory, the store,
// or (if remote) from a node that has it, stored for next time.
func (s *Server) manifest(ctx context.Context, root manifest.Digest, remote bool) (*manifest.Manifest, error) {
	m, err := s.localManifest(root)
	if err == nil || !remote || s.tracker == nil {
		return m, err
	}
	return s.mflights.do(ctx, root, func() (*manifest.Manifest, error) {
		// Detached from the first asker: others may be waiting too.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*s.cfg.RPCTimeout)
		defer cancel()
		// Re-check: a flight that just ended stored it.
		if m, err := s.localManifest(root); err == nil {
			return m, nil
		}
		return s.fetchManifest(ctx, root)
	})
}

// localManifest returns the manifest of root from memory or the store.
func (s *Server) localManifest(root manifest.Digest) (*manifest.Manifest, error) {
	if m := s.manifests.get(root); m != nil {
		return m, nil
	}
	m, err := s.store.GetManifest(root)
	if err != nil {
		if errors.Is(err, chunkstore.ErrCorrupt) {
			s.log.Warn("stored manifest damaged; removed", "root", root, "err", err)
		} else if !errors.Is(err, chunkstore.ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("file %s: %w", root, errUnknownFile)
	}
	s.manifests.put(m)
	return m, nil
}

// fetchManifest asks the nodes the tracker lists for chunk 0 of root, the
// holders first, and keeps the first manifest that validates and has the
// root asked for.
func (s *Server) fetchManifest(ctx context.Context, root manifest.Digest) (*manifest.Manifest, error) {
	lctx, cancel := context.WithTimeout(ctx, s.cfg.RPCTimeout)
	resp, err := s.tracker.Locate(lctx, &trackerv1.LocateRequest{
		Root:              root[:],
		FirstChunk:        0,
		ChunkCount:        1,
		Requester:         s.cfg.NodeID,
		Roles:             sourceRoles,
		IncludeNonHolders: true,
		MaxSources:        uint32(s.cfg.MaxSources),
	})
	cancel()
	if err != nil {
		if c := status.Code(err); c == codes.NotFound || c == codes.InvalidArgument {
			return nil, fmt.Errorf("file %s: %w", root, errUnknownFile)
		}
		return nil, fmt.Errorf("locate %s: %w", root, err)
	}
	var srcs []source
	if len(resp.Chunks) > 0 {
		srcs = s.sources(resp, 0)
	}
	if len(srcs) == 0 {
		return nil, fmt.Errorf("file %s: no node holds it: %w", root, errUnknownFile)
	}
	var errs []error
	for _, src := range srcs {
		m, err := s.manifestFrom(ctx, src, root)
		if err == nil {
			if err := s.store.PutManifest(m); err != nil {
				s.log.Warn("store manifest", "root", root, "err", err)
			}
			s.manifests.put(m)
			return m, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", src.id, err))
	}
	return nil, fmt.Errorf("manifest %s from %d sources: %w", root, len(srcs), errors.Join(errs...))
}

func (s *Server) manifestFrom(ctx context.Context, src source, root manifest.Digest) (*manifest.Manifest, error) {
	c, err := s.pool.Client(src.addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RPCTimeout)
	defer cancel()
	start := time.Now()
	resp, err := c.GetManifest(ctx, &sppv1.GetManifestRequest{File: &sppv1.GetManifestRequest_Root{Root: root[:]}})
	if err != nil {
		return nil, err
	}
	m, err := manifest.FromProto(resp.Manifest)
	if err != nil {
		return nil, err
	}
	if m.Root != root {
		// Valid in itself but not what we asked for: never trust it.
		return nil, fmt.Errorf("sent the manifest of %s", m.Root)
	}
	s.log.Debug("fetched manifest", "root", root, "from", src.id, "took", time.Since(start))
	return m, nil
}

// manifestCache keeps parsed manifests in memory, so serving a chunk costs
// no manifest read. When full it forgets an arbitrary entry: the store
// still has it.
type manifestCache struct {
	mu  sync.Mutex
	max int
	m   map[manifest.Digest]*manifest.Manifest
}

func (c *manifestCache) get(root manifest.Digest) *manifest.Manifest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[root]
}

func (c *manifestCache) put(m *manifest.Manifest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[m.Root]; !ok && len(c.m) >= c.max {
		for r := range c.m {
			delete(c.m, r)
			break
		}
	}
	c.m[m.Root] = m
}

// group runs one call per key at a time; concurrent callers for the same
// key share its result (a tiny singleflight).
type group[K comparable, V any] struct {
	mu sync.Mutex
	m  map[K]*call[V]
}

type call[V any] struct {
	done chan struct{}
	v    V
	err  error
}

// do runs fn for k unless a call for k is in flight, and returns its
// result. A caller whose ctx ends stops waiting; the call goes on for the
// others.
func (g *group[K, V]) do(ctx context.Context, k K, fn func() (V, error)) (V, error) {
	g.mu.Lock()
	c, ok := g.m[k]
	if !ok {
		c = &call[V]{done: make(chan struct{})}
		g.m[k] = c
		go func() {
			c.v, c.err = fn()
			g.mu.Lock()
			delete(g.m, k)
			g.mu.Unlock()
			close(c.done)
		}()
	}
	g.mu.Unlock()
	select {
	case <-c.done:
		return c.v, c.err
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}
