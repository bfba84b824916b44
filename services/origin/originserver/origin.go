// Package originserver publishes the files of a media directory: it cuts
// each into chunks, builds its manifest, records it with the tracker and
// serves its chunks over SPP to cachenodes.
package originserver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/bitmap"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// Tracker is the part of the tracker API the origin uses.
type Tracker interface {
	PublishFile(context.Context, *trackerv1.PublishFileRequest, ...grpc.CallOption) (*trackerv1.PublishFileResponse, error)
	UnpublishFile(context.Context, *trackerv1.UnpublishFileRequest, ...grpc.CallOption) (*trackerv1.UnpublishFileResponse, error)
	ListFiles(context.Context, *trackerv1.ListFilesRequest, ...grpc.CallOption) (*trackerv1.ListFilesResponse, error)
}

// Announcer queues holdings changes for the tracker (a trackerclient.Member).
type Announcer interface {
	Update(*trackerv1.Have)
}

// ErrNotPublished reports a name or root the origin does not publish.
var ErrNotPublished = errors.New("not published")

// entry is one published version of a file.
type entry struct {
	path string
	m    *manifest.Manifest
	size int64
	mod  time.Time
}

// Server is an origin: the published set and its SPP service.
type Server struct {
	sppv1.UnimplementedChunkServiceServer
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	mu      sync.RWMutex
	byName  map[string]*entry
	byRoot  map[manifest.Digest]*entry
	tracker Tracker
	member  Announcer
}

// New returns an origin for cfg. Call Scan to publish the media directory.
func New(cfg Config, reg prometheus.Registerer) (*Server, error) {
	cfg.applyDefaults()
	if cfg.MediaDir == "" {
		return nil, errors.New("origin: media directory not set")
	}
	if st, err := os.Stat(cfg.MediaDir); err != nil {
		return nil, fmt.Errorf("origin: media directory: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("origin: media directory %s: not a directory", cfg.MediaDir)
	}
	s := &Server{
		cfg:     cfg,
		log:     slog.Default().With("node", cfg.NodeID),
		metrics: newMetrics(reg),
		byName:  map[string]*entry{},
		byRoot:  map[manifest.Digest]*entry{},
	}
	return s, nil
}

// Node describes this origin for tracker registration.
func (s *Server) Node() *trackerv1.Node {
	return &trackerv1.Node{
		Id:              s.cfg.NodeID,
		Role:            trackerv1.Role_ROLE_ORIGIN,
		GrpcAddr:        s.cfg.Advertise,
		HttpAddr:        s.cfg.HTTPAddr,
		OpsAddr:         s.cfg.OpsAddr,
		UpSinceUnixNano: time.Now().UnixNano(),
	}
}

// Attach connects the origin to the tracker: publishes go to t, holdings
// to a. Files already published are recorded again; those the tracker
// does not take now (it may start after the origin: on Docker Swarm
// nothing orders the start) are tried again in the background, with
// backoff, until recorded, unpublished, or ctx ends.
func (s *Server) Attach(ctx context.Context, t Tracker, a Announcer) {
	s.mu.Lock()
	s.tracker, s.member = t, a
	entries := make([]*entry, 0, len(s.byName))
	for _, e := range s.byName {
		entries = append(entries, e)
	}
	s.mu.Unlock()
	if pending := s.recordAll(ctx, entries); len(pending) > 0 {
		go s.retryRecord(ctx, pending)
	}
}

// recordAll records entries still published and returns those that failed.
func (s *Server) recordAll(ctx context.Context, entries []*entry) []*entry {
	var failed []*entry
	for _, e := range entries {
		s.mu.RLock()
		current := s.byName[e.m.Name] == e
		s.mu.RUnlock()
		if !current {
			continue
		}
		if err := s.record(ctx, e); err != nil {
			s.log.Warn("record file with tracker", "name", e.m.Name, "err", err)
			failed = append(failed, e)
		}
	}
	return failed
}

func (s *Server) retryRecord(ctx context.Context, pending []*entry) {
	wait := time.Second
	for len(pending) > 0 {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
		pending = s.recordAll(ctx, pending)
	}
	s.log.Info("files recorded with tracker after a retry")
}

// Haves returns the origin's holdings: every chunk of every published file.
func (s *Server) Haves() []*trackerv1.Have {
	s.mu.RLock()
	defer s.mu.RUnlock()
	hs := make([]*trackerv1.Have, 0, len(s.byRoot))
	for _, e := range s.byRoot {
		hs = append(hs, fullHave(e.m))
	}
	return hs
}

func fullHave(m *manifest.Manifest) *trackerv1.Have {
	b := bitmap.New(m.ChunkCount())
	for i := range m.ChunkCount() {
		b.Set(i)
	}
	return &trackerv1.Have{Root: m.Root[:], ChunkCount: uint32(m.ChunkCount()), Bitmap: b.Encode()}
}

// Files returns the published manifests.
func (s *Server) Files() []*manifest.Manifest {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ms := make([]*manifest.Manifest, 0, len(s.byName))
	for _, e := range s.byName {
		ms = append(ms, e.m)
	}
	return ms
}

// Lookup returns the published manifest of name.
func (s *Server) Lookup(name string) (*manifest.Manifest, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.byName[name]
	if !ok {
		return nil, false
	}
	return e.m, true
}

// Scan publishes new and changed files of the media directory and
// unpublishes files that are gone. A changed file is a new version: it
// gets a new root, and the old root is no longer served by the origin.
func (s *Server) Scan(ctx context.Context) error {
	seen := map[string]bool{}
	err := filepath.WalkDir(s.cfg.MediaDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			s.log.Warn("scan media dir", "path", p, "err", err)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rel, _ := filepath.Rel(s.cfg.MediaDir, p)
		name := filepath.ToSlash(rel)
		if d.IsDir() {
			if name != "." && hidden(name) {
				return filepath.SkipDir
			}
			return nil
		}
		// Symlinks are skipped: following one could publish a file outside
		// the media directory.
		if !d.Type().IsRegular() || hidden(name) || manifest.CheckName(name) != nil {
			return nil
		}
		seen[name] = true
		if _, err := s.publish(ctx, name, p, false); err != nil {
			s.log.Warn("publish", "name", name, "err", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("scan %s: %w", s.cfg.MediaDir, err)
	}
	s.mu.RLock()
	var gone []string
	for name := range s.byName {
		if !seen[name] {
			gone = append(gone, name)
		}
	}
	s.mu.RUnlock()
	for _, name := range gone {
		if err := s.Unpublish(ctx, name); err != nil {
			s.log.Warn("unpublish", "name", name, "err", err)
		}
	}
	return nil
}

// hidden reports names with a segment starting with a dot: editors' and
// uploads' temporary files are never published.
func hidden(name string) bool {
	return strings.HasPrefix(name, ".") || strings.Contains(name, "/.")
}

// Publish publishes (or re-publishes after a change) the file at name
// under the media directory.
func (s *Server) Publish(ctx context.Context, name string) (*manifest.Manifest, error) {
	if err := manifest.CheckName(name); err != nil {
		return nil, err
	}
	if hidden(name) {
		return nil, fmt.Errorf("%w %q: hidden files are not published", manifest.ErrBadName, name)
	}
	return s.publish(ctx, name, filepath.Join(s.cfg.MediaDir, filepath.FromSlash(name)), true)
}

func (s *Server) publish(ctx context.Context, name, path string, force bool) (*manifest.Manifest, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", name)
	}
	s.mu.RLock()
	old := s.byName[name]
	s.mu.RUnlock()
	if old != nil && !force && old.size == st.Size() && old.mod.Equal(st.ModTime()) {
		return old.m, nil
	}
	start := time.Now()
	m, err := manifest.BuildFile(ctx, path, s.cfg.ChunkSize)
	if err != nil {
		return nil, err
	}
	m.Name = name
	m.ContentType = manifest.ContentType(name)
	e := &entry{path: path, m: m, size: m.Size, mod: m.ModTime}
	s.mu.Lock()
	if old := s.byName[name]; old != nil && old.m.Root != m.Root {
		delete(s.byRoot, old.m.Root)
	}
	s.byName[name] = e
	s.byRoot[m.Root] = e
	s.mu.Unlock()
	s.metrics.files.Set(float64(s.count()))
	s.log.Info("published", "name", name, "size", m.Size, "chunks", m.ChunkCount(), "root", m.Root, "took", time.Since(start).Round(time.Millisecond))
	if err := s.record(ctx, e); err != nil {
		return m, fmt.Errorf("record %s with tracker: %w", name, err)
	}
	return m, nil
}

func (s *Server) count() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.byName)
}

// record tells the tracker about a published file, if attached.
func (s *Server) record(ctx context.Context, e *entry) error {
	s.mu.RLock()
	t, a := s.tracker, s.member
	s.mu.RUnlock()
	if t == nil {
		return nil
	}
	if a != nil {
		a.Update(fullHave(e.m))
	}
	_, err := t.PublishFile(ctx, &trackerv1.PublishFileRequest{File: FileSummary(e.m)})
	return err
}

// FileSummary converts a manifest into the tracker's file record.
func FileSummary(m *manifest.Manifest) *trackerv1.File {
	var mod int64
	if !m.ModTime.IsZero() {
		mod = m.ModTime.UnixNano()
	}
	return &trackerv1.File{
		Name:              m.Name,
		Size:              uint64(m.Size),
		ChunkSize:         uint32(m.ChunkSize),
		ChunkCount:        uint32(m.ChunkCount()),
		Root:              m.Root[:],
		ModTimeUnixNano:   mod,
		ContentType:       m.ContentType,
		PublishedUnixNano: time.Now().UnixNano(),
	}
}

// Unpublish removes name from the published set and from the tracker.
func (s *Server) Unpublish(ctx context.Context, name string) error {
	s.mu.Lock()
	e, ok := s.byName[name]
	if ok {
		delete(s.byName, name)
		delete(s.byRoot, e.m.Root)
	}
	t, a := s.tracker, s.member
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("%q: %w", name, ErrNotPublished)
	}
	s.metrics.files.Set(float64(s.count()))
	s.log.Info("unpublished", "name", name, "root", e.m.Root)
	if a != nil {
		a.Update(&trackerv1.Have{Root: e.m.Root[:], ChunkCount: uint32(e.m.ChunkCount())})
	}
	if t != nil {
		if _, err := t.UnpublishFile(ctx, &trackerv1.UnpublishFileRequest{Name: name}); err != nil {
			return fmt.Errorf("unpublish %s at tracker: %w", name, err)
		}
	}
	return nil
}

// Run rescans the media directory every cfg.Rescan until ctx ends.
func (s *Server) Run(ctx context.Context) {
	if s.cfg.Rescan <= 0 {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(s.cfg.Rescan)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.Scan(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("rescan", "err", err)
			}
		}
	}
}
