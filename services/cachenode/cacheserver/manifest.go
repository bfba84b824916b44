package cacheserver

import (
	"context"
	"errors"
	"fmt"
	"sync"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/chunkstore"
	"github.com/p2pd/p2pd/internal/flight"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/source"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// GetManifest implements SPP: the manifest of a file by root or by
// published name, from the local store or else from a node that has it.
func (s *serving) GetManifest(ctx context.Context, req *sppv1.GetManifestRequest) (*sppv1.GetManifestResponse, error) {
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

func (s *serving) manifestByName(ctx context.Context, name string) (*sppv1.GetManifestResponse, error) {
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
func (s *known) manifest(ctx context.Context, root manifest.Digest, remote bool) (*manifest.Manifest, error) {
	m, err := s.localManifest(root)
	if err == nil || !remote || s.tracker == nil {
		return m, err
	}
	return s.mflights.Do(ctx, root.String(), func() (*manifest.Manifest, error) {
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
func (s *known) localManifest(root manifest.Digest) (*manifest.Manifest, error) {
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
func (s *known) fetchManifest(ctx context.Context, root manifest.Digest) (*manifest.Manifest, error) {
	lctx, cancel := context.WithTimeout(ctx, s.cfg.RPCTimeout)
	resp, err := s.tracker.Locate(lctx, &trackerv1.LocateRequest{
		Root:              root[:],
		FirstChunk:        0,
		ChunkCount:        1,
		Requester:         s.cfg.NodeID,
		Roles:             sourceRoles,
		IncludeNonHolders: true,
		MaxSources:        uint32(s.cfg.MaxSources),
		// A manifest climbs as chunks do (tier.go): through the
		// region's relay, or the parents, before the origin.
		AllowRelay: len(s.cfg.Parents) == 0,
	})
	cancel()
	if err != nil {
		if c := status.Code(err); c == codes.NotFound || c == codes.InvalidArgument {
			return nil, fmt.Errorf("file %s: %w", root, errUnknownFile)
		}
		return nil, fmt.Errorf("locate %s: %w", root, err)
	}
	var srcs []source.Source
	for _, u := range s.sources(resp, 0) {
		srcs = append(srcs, u.Source)
	}
	if len(srcs) == 0 {
		return nil, fmt.Errorf("file %s: no node holds it: %w", root, errUnknownFile)
	}
	m, err := source.FetchManifest(ctx, s.pool, root, srcs, source.ManifestOptions{Budget: 2 * s.cfg.RPCTimeout})
	if err != nil {
		return nil, err
	}
	if err := s.store.PutManifest(m); err != nil {
		s.log.Warn("store manifest", "root", root, "err", err)
	}
	s.manifests.put(m)
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

// known is what the node knows of manifests: those parsed in memory and
// the fetches of those it lacks, one per root at a time.
type known struct {
	*base
	manifests manifestCache
	mflights  flight.Group[*manifest.Manifest]
}
