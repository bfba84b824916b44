package adminserver

import (
	"context"
	"encoding/hex"
	"errors"
	"io/fs"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

	adminv1 "github.com/p2pd/p2pd/gen/admin/v1"
	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/services/origin/originserver"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// PublishFile publishes a file already under the media directory.
func (s *Server) PublishFile(ctx context.Context, req *adminv1.PublishFileRequest) (*adminv1.PublishFileResponse, error) {
	name, err := s.resolvePath(req.Path)
	if err != nil {
		return nil, err
	}
	unlock := s.locks.lock(name)
	defer unlock()
	if m, ok := s.origin.Lookup(name); ok && !req.Replace {
		return nil, newError(CodeAlreadyPublished, http.StatusConflict, codes.AlreadyExists, nil,
			`%s is already published (root %s): pass "replace": true (p2pd admin publish --replace) to publish it again after a change, or unpublish it first`, name, m.Root)
	}
	if _, err := s.statRegular(name); err != nil {
		return nil, err
	}
	m, err := s.publish(ctx, name)
	if err != nil {
		return nil, err
	}
	s.log.Info("published", "name", name, "size", m.Size, "root", m.Root)
	return &adminv1.PublishFileResponse{File: fileOf(m)}, nil
}

// publish has the origin publish name, all or nothing: when the tracker
// cannot be told, the origin does not keep serving a file the CDN does
// not know about.
func (s *Server) publish(ctx context.Context, name string) (*manifest.Manifest, error) {
	m, err := s.origin.Publish(ctx, name)
	if err == nil {
		s.waitServable(ctx, m)
		return m, nil
	}
	if m != nil {
		s.unpublishQuietly(name)
		return nil, errTracker(err, "publish "+name+": nothing was published")
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, newError(CodePathNotFound, http.StatusNotFound, codes.NotFound, err,
			"no file %s under the media directory %s: it disappeared while being published", name, s.cfg.MediaDir)
	}
	return nil, errInternal(err, "publish "+name)
}

// waitServable waits, up to PublishWait, until the tracker lists a node
// holding m's first chunk. The origin records a file at once but announces
// its holdings in the next batch; until then edges cannot fetch the file,
// and a caller who just saw the publish succeed would get an error.
func (s *Server) waitServable(ctx context.Context, m *manifest.Manifest) {
	if s.tracker == nil || m.ChunkCount() == 0 {
		return // an empty file needs no chunk: edges serve it from its record
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishWait)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := s.tracker.Locate(ctx, &trackerv1.LocateRequest{Root: m.Root[:], ChunkCount: 1})
		if err == nil && len(resp.Chunks) == 1 && slices.Contains(resp.Chunks[0].Held, true) {
			return
		}
		select {
		case <-ctx.Done():
			s.log.Warn("published, but the tracker lists no holder yet", "name", m.Name, "waited", s.cfg.PublishWait)
			return
		case <-tick.C:
		}
	}
}

// unpublishQuietly undoes a publish whose outcome is being reported as a
// failure; its own errors add nothing to that report.
func (s *Server) unpublishQuietly(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.TrackerTimeout)
	defer cancel()
	if err := s.origin.Unpublish(ctx, name); err != nil && !errors.Is(err, originserver.ErrNotPublished) {
		s.log.Warn("undo publish", "name", name, "err", err)
	}
}

// ListFiles lists the origin's published files with how widely each is
// cached.
func (s *Server) ListFiles(ctx context.Context, _ *adminv1.ListFilesRequest) (*adminv1.ListFilesResponse, error) {
	ms := s.origin.Files()
	slices.SortFunc(ms, func(a, b *manifest.Manifest) int { return strings.Compare(a.Name, b.Name) })
	nodes, err := s.listNodes(ctx)
	if err != nil {
		return nil, err
	}
	published, err := s.publishedTimes(ctx)
	if err != nil {
		return nil, err
	}
	resp := &adminv1.ListFilesResponse{Files: make([]*adminv1.File, 0, len(ms))}
	for _, m := range ms {
		f := fileOf(m)
		f.PublishedTime = published[m.Root]
		for _, h := range nodes.holders(m.Root) {
			if h.Role != roleName(trackerv1.Role_ROLE_ORIGIN) {
				f.CachedOnNodes++
				f.CachedChunks += uint64(h.Chunks)
			}
		}
		resp.Files = append(resp.Files, f)
	}
	return resp, nil
}

// GetFile describes one published file and its holders.
func (s *Server) GetFile(ctx context.Context, req *adminv1.GetFileRequest) (*adminv1.GetFileResponse, error) {
	if err := checkName(req.Name); err != nil {
		return nil, err
	}
	m, ok := s.origin.Lookup(req.Name)
	if !ok {
		return nil, errNotPublished(req.Name)
	}
	nodes, err := s.listNodes(ctx)
	if err != nil {
		return nil, err
	}
	published, err := s.publishedTimes(ctx)
	if err != nil {
		return nil, err
	}
	f := fileOf(m)
	f.PublishedTime = published[m.Root]
	holders := nodes.holders(m.Root)
	for _, h := range holders {
		if h.Role != roleName(trackerv1.Role_ROLE_ORIGIN) {
			f.CachedOnNodes++
			f.CachedChunks += uint64(h.Chunks)
		}
	}
	if req.ChunkMap && len(holders) > 0 {
		if err := s.chunkMap(ctx, m, holders); err != nil {
			return nil, err
		}
	}
	return &adminv1.GetFileResponse{File: f, Holders: holders}, nil
}

// chunkMap fills each holder's bitmap of held chunks from Locate, which
// lists the holders of every chunk (up to the tracker's cap on sources per
// chunk, 32 by default; beyond that the map undercounts and
// Holder.chunks stays exact).
func (s *Server) chunkMap(ctx context.Context, m *manifest.Manifest, holders []*adminv1.Holder) error {
	byID := map[string]*adminv1.Holder{}
	n := m.ChunkCount()
	for _, h := range holders {
		h.ChunkMap = make([]byte, (n+7)/8)
		byID[h.NodeId] = h
	}
	const window = 1024 // the tracker's default MaxLocateChunks
	for first := 0; first < n; first += window {
		count := min(window, n-first)
		tctx, cancel := context.WithTimeout(ctx, s.cfg.TrackerTimeout)
		resp, err := s.tracker.Locate(tctx, &trackerv1.LocateRequest{
			Root:       m.Root[:],
			FirstChunk: uint32(first),
			ChunkCount: uint32(count),
			Roles:      []trackerv1.Role{trackerv1.Role_ROLE_ORIGIN, trackerv1.Role_ROLE_CACHENODE},
			MaxSources: 1 << 16, // the tracker caps it: as many holders as it allows
		})
		cancel()
		if err != nil {
			return errTracker(err, "locate the chunks of "+m.Name)
		}
		for i, cs := range resp.Chunks {
			chunk := first + i
			for j, k := range cs.NodeIndex {
				if j >= len(cs.Held) || !cs.Held[j] || int(k) >= len(resp.Nodes) {
					continue
				}
				if h := byID[resp.Nodes[k].Id]; h != nil {
					h.ChunkMap[chunk/8] |= 1 << (chunk % 8)
				}
			}
		}
	}
	return nil
}

// DeleteFile unpublishes a file and, unless asked to keep it, deletes it
// from the media directory so that no rescan publishes it again.
func (s *Server) DeleteFile(ctx context.Context, req *adminv1.DeleteFileRequest) (*adminv1.DeleteFileResponse, error) {
	name := req.Name
	if err := checkName(name); err != nil {
		return nil, err
	}
	unlock := s.locks.lock(name)
	defer unlock()
	var root manifest.Digest
	if m, ok := s.origin.Lookup(name); ok {
		root = m.Root
		err := s.origin.Unpublish(ctx, name)
		switch {
		case errors.Is(err, originserver.ErrNotPublished):
			return nil, errNotPublished(name)
		case err != nil:
			// The origin dropped it; the tracker still lists it. A retry
			// finds it at the tracker only, and finishes the job below.
			return nil, errTracker(err, "unpublish "+name+": the origin no longer serves it but edges may still list it; retry")
		}
	} else {
		var err error
		if root, err = s.unpublishAtTracker(ctx, name); err != nil {
			return nil, err
		}
	}
	s.log.Info("unpublished", "name", name, "keep_file", req.KeepFile)
	s.purgeUnpublished(ctx, name, root)
	if req.KeepFile {
		return &adminv1.DeleteFileResponse{}, nil
	}
	if err := s.media.Remove(filepath.FromSlash(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, errInternal(err, "unpublished "+name+" but could not delete its file (delete it by hand, or the next scan publishes it again)")
	}
	return &adminv1.DeleteFileResponse{}, nil
}

// unpublishAtTracker removes a file the origin does not publish but the
// tracker still lists (an earlier DELETE that could not reach it).
// It returns the root the tracker had.
func (s *Server) unpublishAtTracker(ctx context.Context, name string) (manifest.Digest, error) {
	var root manifest.Digest
	if s.tracker == nil {
		return root, errNotPublished(name)
	}
	tctx, cancel := context.WithTimeout(ctx, s.cfg.TrackerTimeout)
	defer cancel()
	resp, err := s.tracker.GetFile(tctx, &trackerv1.GetFileRequest{Name: name})
	if status.Code(err) == codes.NotFound {
		return root, errNotPublished(name)
	}
	if err != nil {
		return root, errTracker(err, "unpublish "+name)
	}
	root, _ = manifest.DigestFromBytes(resp.GetFile().GetRoot())
	if _, err := s.tracker.UnpublishFile(tctx, &trackerv1.UnpublishFileRequest{Name: name}); err != nil {
		return root, errTracker(err, "unpublish "+name)
	}
	return root, nil
}

func errNotPublished(name string) error {
	return newError(CodeNotPublished, http.StatusNotFound, codes.NotFound, nil,
		"%s is not published: list the published files with GET /v1/files (p2pd admin ls)", name)
}

// publishedTimes maps the roots the tracker knows to when they were
// published.
func (s *Server) publishedTimes(ctx context.Context) (map[manifest.Digest]*timestamppb.Timestamp, error) {
	out := map[manifest.Digest]*timestamppb.Timestamp{}
	if s.tracker == nil {
		return out, nil
	}
	tctx, cancel := context.WithTimeout(ctx, s.cfg.TrackerTimeout)
	defer cancel()
	resp, err := s.tracker.ListFiles(tctx, &trackerv1.ListFilesRequest{})
	if err != nil {
		return nil, errTracker(err, "list files")
	}
	for _, f := range resp.Files {
		root, err := manifest.DigestFromBytes(f.Root)
		if err != nil || f.PublishedUnixNano == 0 {
			continue
		}
		out[root] = timestamppb.New(time.Unix(0, f.PublishedUnixNano))
	}
	return out, nil
}

// fileOf converts a manifest into the API's file record.
func fileOf(m *manifest.Manifest) *adminv1.File {
	f := &adminv1.File{
		Name:        m.Name,
		Size:        uint64(m.Size),
		ChunkSize:   uint32(m.ChunkSize),
		ChunkCount:  uint32(m.ChunkCount()),
		Root:        hex.EncodeToString(m.Root[:]),
		Etag:        m.ETag(),
		ContentType: m.ContentType,
	}
	if !m.ModTime.IsZero() {
		f.ModTime = timestamppb.New(m.ModTime)
	}
	return f
}
