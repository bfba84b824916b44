package edgeserver

import (
	"context"
	"errors"
	"fmt"
	"time"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/source"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors that decide the status of a response that failed before headers.
var (
	// errTracker: the tracker could not be asked (503).
	errTracker = errors.New("tracker unavailable")
	// errNoSource: no node is registered to serve the chunk (503).
	errNoSource = errors.New("no source node available")
	// errUpstream: every source failed or sent wrong data (502).
	errUpstream = errors.New("all source nodes failed")
	// errNotHeld: every source declined (NOT_FOUND): no node holds the
	// data and none may fetch it, as a p2pd cache without -n (404).
	errNotHeld = errors.New("no source node holds the data")
)

// located is one Locate answer: ranked sources for a window of chunks.
type located struct {
	first  int
	chunks [][]source.Source // per chunk, best first
}

type locateKey struct {
	root   manifest.Digest
	window int
}

// file returns the published file called name, nil if there is none.
// Answers, negative ones included, are cached for FileTTL.
func (s *Server) file(ctx context.Context, name string) (*trackerv1.File, error) {
	return s.files.get(ctx, name, func(ctx context.Context) (*trackerv1.File, error) {
		resp, err := s.cfg.Tracker.GetFile(ctx, &trackerv1.GetFileRequest{Name: name})
		if status.Code(err) == codes.NotFound {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: get file %q: %w", errTracker, name, err)
		}
		f := resp.GetFile()
		if f == nil || f.Name != name {
			return nil, fmt.Errorf("%w: get file %q: tracker answered for %q", errTracker, name, f.GetName())
		}
		return f, nil
	})
}

// manifestOf returns the validated manifest of f. Manifests are keyed by
// root: content-addressed, so a cached one never goes stale.
func (s *Server) manifestOf(ctx context.Context, f *trackerv1.File) (*manifest.Manifest, error) {
	root, err := manifest.DigestFromBytes(f.Root)
	if err != nil {
		return nil, fmt.Errorf("%w: file %q: root: %w", errTracker, f.Name, err)
	}
	if f.Size == 0 {
		// Nothing to fetch: an empty file's manifest follows from its root.
		m := &manifest.Manifest{Name: f.Name, ChunkSize: int(f.ChunkSize), Root: manifest.RootOf(nil), ContentType: f.ContentType}
		if f.ModTimeUnixNano != 0 {
			m.ModTime = time.Unix(0, f.ModTimeUnixNano)
		}
		if m.Root != root {
			return nil, fmt.Errorf("%w: file %q: empty file with root %s", errTracker, f.Name, root)
		}
		return m, nil
	}
	return s.manifests.get(ctx, root, func(ctx context.Context) (*manifest.Manifest, error) {
		return s.fetchManifest(ctx, root, f)
	})
}

// fetchManifest asks the sources ranked for chunk 0, in order, until one
// returns a manifest that validates and has the root asked for.
func (s *Server) fetchManifest(ctx context.Context, root manifest.Digest, f *trackerv1.File) (*manifest.Manifest, error) {
	chunks := 1 // a summary without chunk size still names chunk 0
	if f.ChunkSize > 0 {
		chunks = manifest.ChunkCountFor(int64(f.Size), int(f.ChunkSize))
	}
	first := s.pinned()
	if first == nil {
		loc, err := s.locate(ctx, root, 0, chunks)
		if err != nil {
			return nil, err
		}
		first = loc.chunks[0]
	}
	cands := s.order(first, nil)
	if len(cands) == 0 {
		return nil, fmt.Errorf("manifest of %q: %w", f.Name, errNoSource)
	}
	m, err := source.FetchManifest(ctx, s.nodes, root, cands, source.ManifestOptions{
		Failed: func(n source.Source, err error) {
			s.cfg.Logger.Warn("manifest source failed", "node", n.ID, "addr", n.Addr, "root", root.String(), "err", err)
			s.health.Failure(n.ID)
		},
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("manifest of %q: %w: %w", f.Name, errUpstream, err)
	}
	return m, nil
}

// pinned returns the Upstream node as the only source, nil when the edge
// follows the tracker's ranking.
func (s *Server) pinned() []source.Source {
	if s.cfg.Upstream == "" {
		return nil
	}
	return []source.Source{{ID: s.cfg.Upstream, Addr: s.cfg.Upstream, Role: trackerv1.Role_ROLE_CACHENODE, Held: true}}
}

// sources returns the ranked sources for chunk idx of m.
func (s *Server) sources(ctx context.Context, m *manifest.Manifest, idx int) ([]source.Source, error) {
	if up := s.pinned(); up != nil {
		return up, nil
	}
	loc, err := s.locate(ctx, m.Root, idx, m.ChunkCount())
	if err != nil {
		return nil, err
	}
	if i := idx - loc.first; i < len(loc.chunks) {
		return loc.chunks[i], nil
	}
	// The window was located for a shorter file (a summary that disagrees
	// with the manifest): no source rather than a wrong index.
	return nil, nil
}

// locate returns the cached Locate answer for the window holding chunk idx
// of a file of count chunks.
func (s *Server) locate(ctx context.Context, root manifest.Digest, idx, count int) (*located, error) {
	w := s.cfg.LocateWindow
	key := locateKey{root: root, window: idx / w}
	return s.locates.get(ctx, key, func(ctx context.Context) (*located, error) {
		first := key.window * w
		n := min(w, count-first)
		resp, err := s.cfg.Tracker.Locate(ctx, &trackerv1.LocateRequest{
			Root:              root[:],
			FirstChunk:        uint32(first),
			ChunkCount:        uint32(n),
			Roles:             s.cfg.Roles,
			IncludeNonHolders: true, // a cachenode fetches what it misses
			Region:            s.cfg.Region,
		})
		if err != nil {
			return nil, fmt.Errorf("%w: locate chunks %d+%d of %s: %w", errTracker, first, n, root, err)
		}
		loc := &located{first: first, chunks: make([][]source.Source, n)}
		for i := range loc.chunks {
			// Holders and the nodes that would fetch it alike: a cachenode
			// fetches what it misses.
			loc.chunks[i] = source.Ranked(resp, i, "")
		}
		return loc, nil
	})
}

// order returns cands without the excluded nodes, nodes on probation last:
// probation is a preference, so a lone node that hiccuped is still used.
func (s *Server) order(cands []source.Source, excluded map[string]bool) []source.Source {
	out := make([]source.Source, 0, len(cands))
	var later []source.Source
	for _, n := range cands {
		switch {
		case excluded[n.ID]:
		case s.health.Probation(n.ID):
			later = append(later, n)
		default:
			out = append(out, n)
		}
	}
	return append(out, later...)
}
