package adminserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	adminv1 "github.com/p2pd/p2pd/gen/admin/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	"google.golang.org/grpc/codes"
)

// uploadPrefix starts the name of every upload in progress: a hidden name
// at the top of the media directory, which the origin never publishes.
const uploadPrefix = ".upload-"

// serveUpload is PUT /v1/files/{name...}: the body is the file.
func (s *Server) serveUpload(w http.ResponseWriter, r *http.Request) {
	replace := false
	if v := r.URL.Query().Get("replace"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, errInvalid("replace=%q: want true or false", v))
			return
		}
		replace = b
	}
	want, err := parseReprDigest(r.Header.Get("Repr-Digest"))
	if err != nil {
		writeError(w, err)
		return
	}
	f, err := s.upload(r.Context(), upload{
		name:    r.PathValue("name"),
		body:    r.Body,
		size:    r.ContentLength,
		sha256:  want,
		replace: replace,
	})
	if err != nil {
		writeError(w, err)
		return
	}
	body, err := jsonOptions.Marshal(&adminv1.UploadFileResponse{File: f})
	if err != nil {
		writeError(w, errInternal(err, "encode answer"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", "/v1/files/"+escapeName(f.Name))
	w.WriteHeader(http.StatusCreated)
	w.Write(append(body, '\n'))
}

// escapeName escapes each segment of a name for a URL path.
func escapeName(name string) string {
	segs := strings.Split(name, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// UploadFile stores and publishes a file sent whole in the request, for
// gRPC callers; REST callers stream it with PUT instead.
func (s *Server) UploadFile(ctx context.Context, req *adminv1.UploadFileRequest) (*adminv1.UploadFileResponse, error) {
	f, err := s.upload(ctx, upload{name: req.Name, body: bytes.NewReader(req.Data), size: int64(len(req.Data)), replace: req.Replace})
	if err != nil {
		return nil, err
	}
	return &adminv1.UploadFileResponse{File: f}, nil
}

// upload is one upload request.
type upload struct {
	name    string
	body    io.Reader
	size    int64  // -1: unknown until the body ends
	sha256  []byte // expected SHA-256 of the whole file, if the client sent one
	replace bool
}

// upload streams u.body into a hidden temporary file, hashing it as it
// arrives, and renames and publishes it only once it is complete and
// verified. Whatever fails, nothing of it remains.
func (s *Server) upload(ctx context.Context, u upload) (*adminv1.File, error) {
	if err := checkName(u.name); err != nil {
		return nil, err
	}
	if !u.replace {
		if err := s.checkFree(u.name); err != nil {
			return nil, err
		}
	}
	if err := s.checkSpace(u.name, u.size); err != nil {
		return nil, err
	}

	tmp, tmpName, err := s.createTemp()
	if err != nil {
		return nil, errInternal(err, "create upload file in the media directory")
	}
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			s.media.Remove(tmpName)
		}
	}()
	h := newChunkHasher(s.cfg.ChunkSize, u.sha256 != nil)
	n, err := s.copyBody(io.MultiWriter(tmp, h), u)
	if err != nil {
		return nil, err
	}
	if u.sha256 != nil {
		if got := h.sum(); !bytes.Equal(got, u.sha256) {
			return nil, newError(CodeDigestMismatch, http.StatusBadRequest, codes.DataLoss, nil,
				"the %d bytes received for %s have SHA-256 %x but Repr-Digest says %x: the file changed while it was sent or was damaged on the way; nothing was stored, send it again",
				n, u.name, got, u.sha256)
		}
	}
	// The bytes must be on disk before the name points at them: a crash
	// must not leave a published name over a half-written file.
	if err := tmp.Sync(); err != nil {
		return nil, s.writeError(err, u.name)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return nil, errInternal(err, "upload "+u.name)
	}
	if err := tmp.Close(); err != nil {
		return nil, s.writeError(err, u.name)
	}

	unlock := s.locks.lock(u.name)
	defer unlock()
	if !u.replace {
		// Checked again: another upload of the name may have finished
		// while this one was streaming.
		if err := s.checkFree(u.name); err != nil {
			return nil, err
		}
	}
	created, err := s.mkdirs(path.Dir(u.name))
	if err != nil {
		return nil, err
	}
	target := filepath.FromSlash(u.name)
	if err := s.media.Rename(tmpName, target); err != nil {
		s.rmdirs(created)
		if st, serr := s.media.Lstat(target); serr == nil && st.IsDir() {
			return nil, newError(CodeAlreadyExists, http.StatusConflict, codes.AlreadyExists, err,
				"%s is a directory in the media directory: choose another name", u.name)
		}
		return nil, errInternal(err, "store "+u.name)
	}
	committed = true
	syncDir(filepath.Join(s.cfg.MediaDir, filepath.Dir(target)))

	undo := func() {
		// The file at the name is the new one whatever happened, so an
		// older version the origin may still publish is gone as well.
		s.unpublishQuietly(u.name)
		if err := s.media.Remove(target); err != nil {
			s.log.Warn("remove failed upload", "name", u.name, "err", err)
		}
		s.rmdirs(created)
	}
	m, err := s.publish(ctx, u.name)
	if err != nil {
		undo()
		return nil, err
	}
	// The origin hashed the file again from disk; the same root proves
	// the published bytes are the bytes received.
	if m.ChunkSize == s.cfg.ChunkSize {
		if want := h.root(); m.Root != want {
			undo()
			return nil, errInternal(fmt.Errorf("root %s on disk, %s received", m.Root, want),
				"verify "+u.name+": the stored file differs from the bytes received; nothing was published, check the media disk and send it again")
		}
	}
	s.log.Info("uploaded", "name", u.name, "size", n, "root", m.Root, "replace", u.replace)
	return fileOf(m), nil
}

// staleUpload is how long an upload file may go unmodified before it is
// taken for the leftover of a crash: a live upload writes to it all the
// time, and another origin sharing the directory may have one in progress.
const staleUpload = time.Hour

// removeStaleUploads deletes upload files a crashed process left behind.
func (s *Server) removeStaleUploads() {
	entries, err := fs.ReadDir(s.media.FS(), ".")
	if err != nil {
		s.log.Warn("look for stale uploads", "err", err)
		return
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), uploadPrefix) || !e.Type().IsRegular() {
			continue
		}
		if info, err := e.Info(); err != nil || time.Since(info.ModTime()) < staleUpload {
			continue
		}
		if err := s.media.Remove(e.Name()); err != nil {
			s.log.Warn("remove stale upload", "file", e.Name(), "err", err)
			continue
		}
		s.log.Info("removed stale upload", "file", e.Name())
	}
}

// checkFree refuses a name that is published or stored already.
func (s *Server) checkFree(name string) error {
	if m, ok := s.origin.Lookup(name); ok {
		return newError(CodeAlreadyExists, http.StatusConflict, codes.AlreadyExists, nil,
			"%s is already published (root %s): upload with ?replace=true (p2pd admin publish --replace) to replace it, or choose another name (--name)", name, m.Root)
	}
	if _, err := s.media.Lstat(filepath.FromSlash(name)); err == nil {
		return newError(CodeAlreadyExists, http.StatusConflict, codes.AlreadyExists, nil,
			"a file %s already exists in the media directory: upload with ?replace=true (p2pd admin publish --replace) to replace it, or choose another name (--name)", name)
	}
	return nil
}

// checkSpace refuses an upload of known size that does not fit, before a
// byte of it is stored.
func (s *Server) checkSpace(name string, size int64) error {
	if s.cfg.MaxUploadBytes > 0 && size > s.cfg.MaxUploadBytes {
		return errTooLarge(name, size, s.cfg.MaxUploadBytes)
	}
	return s.checkReserve(name, max(size, 0))
}

// checkReserve fails unless the media disk has need bytes free beyond the
// reserve. A body of unknown size (chunked) needs nothing at first and
// is checked again as it streams (copyBody).
func (s *Server) checkReserve(name string, need int64) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.cfg.MediaDir, &st); err != nil {
		return errInternal(err, "check free space in the media directory")
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if need > free-s.cfg.ReserveBytes || free <= s.cfg.ReserveBytes {
		return newError(CodeInsufficientStorage, http.StatusInsufficientStorage, codes.ResourceExhausted, nil,
			"%s needs %d more bytes but the media directory's disk has %d bytes free, %d of them kept in reserve; nothing was stored: free some space or give the origin a bigger disk",
			name, need, max(free, 0), s.cfg.ReserveBytes)
	}
	return nil
}

func errTooLarge(name string, size, limit int64) error {
	return newError(CodeTooLarge, http.StatusRequestEntityTooLarge, codes.ResourceExhausted, nil,
		"%s is %d bytes, more than this server accepts in one upload (%d bytes): copy it into the media directory and publish it by path instead", name, size, limit)
}

// reserveCheckEvery is how often a chunked upload checks the disk's
// reserve as it streams.
const reserveCheckEvery = 8 << 20

// createTemp creates the hidden file an upload is streamed into.
func (s *Server) createTemp() (*os.File, string, error) {
	for range 10 {
		name := uploadPrefix + rand.Text()
		f, err := s.media.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, name, err
	}
	return nil, "", errors.New("no unused temporary name")
}

// copyBody streams the body to w, telling a body that ended early from a
// disk that failed.
func (s *Server) copyBody(w io.Writer, u upload) (int64, error) {
	src := u.body
	if s.cfg.MaxUploadBytes > 0 {
		src = io.LimitReader(src, s.cfg.MaxUploadBytes+1)
	}
	buf := make([]byte, 1<<20)
	var n, checked int64
	for {
		if u.size < 0 && n-checked >= reserveCheckEvery {
			// A body of unknown size: what it wrote so far is on the
			// disk already, so the reserve must still be free.
			checked = n
			if err := s.checkReserve(u.name, 0); err != nil {
				return n, err
			}
		}
		k, rerr := src.Read(buf)
		if k > 0 {
			if _, werr := w.Write(buf[:k]); werr != nil {
				return n, s.writeError(werr, u.name)
			}
			n += int64(k)
			if s.cfg.MaxUploadBytes > 0 && n > s.cfg.MaxUploadBytes {
				return n, errTooLarge(u.name, n, s.cfg.MaxUploadBytes)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return n, newError(CodeUploadIncomplete, http.StatusBadRequest, codes.Aborted, rerr,
				"the upload of %s broke off after %d bytes (%v); nothing was stored: send it again", u.name, n, rerr)
		}
	}
	if u.size >= 0 && n != u.size {
		return n, newError(CodeUploadIncomplete, http.StatusBadRequest, codes.Aborted, nil,
			"the upload of %s ended after %d of %d bytes; nothing was stored: send it again", u.name, n, u.size)
	}
	return n, nil
}

// writeError classifies a failure to write an upload to disk.
func (s *Server) writeError(err error, name string) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return newError(CodeInsufficientStorage, http.StatusInsufficientStorage, codes.ResourceExhausted, err,
			"the media directory's disk filled up while %s was being stored; nothing was stored: free some space or give the origin a bigger disk", name)
	}
	return errInternal(err, "store "+name)
}

// mkdirs creates dir and its missing parents inside the media directory
// and returns those it created, deepest last, so a failure can remove
// them again.
func (s *Server) mkdirs(dir string) ([]string, error) {
	if dir == "." {
		return nil, nil
	}
	var missing []string
	for d := dir; d != "."; d = path.Dir(d) {
		if _, err := s.media.Lstat(filepath.FromSlash(d)); err == nil {
			break
		}
		missing = append([]string{d}, missing...)
	}
	if err := s.media.MkdirAll(filepath.FromSlash(dir), 0o755); err != nil {
		s.rmdirs(missing)
		if isEscape(err) {
			return nil, newError(CodeOutsideMediaDir, http.StatusBadRequest, codes.InvalidArgument, err,
				"%s leads outside the media directory through a symbolic link: choose another name", dir)
		}
		if errors.Is(err, syscall.ENOTDIR) || errors.Is(err, fs.ErrExist) {
			return nil, newError(CodeAlreadyExists, http.StatusConflict, codes.AlreadyExists, err,
				"a file in the media directory is in the way of directory %s: choose another name", dir)
		}
		return nil, errInternal(err, "create directory "+dir)
	}
	return missing, nil
}

// rmdirs removes directories mkdirs created, deepest first. A directory
// something else has meanwhile put a file into stays.
func (s *Server) rmdirs(dirs []string) {
	for i := len(dirs) - 1; i >= 0; i-- {
		s.media.Remove(filepath.FromSlash(dirs[i]))
	}
}

// syncDir makes a rename in dir durable. Best effort: the rename itself
// already happened and the file's bytes are synced.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// parseReprDigest extracts the SHA-256 from a Repr-Digest header (RFC
// 9530: `sha-256=:BASE64:`, other algorithms ignored). No header, or none
// with sha-256, means nothing to verify against.
func parseReprDigest(v string) ([]byte, error) {
	if v == "" {
		return nil, nil
	}
	for _, item := range strings.Split(v, ",") {
		alg, val, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || !strings.EqualFold(alg, "sha-256") {
			continue
		}
		b64, ok := strings.CutPrefix(val, ":")
		if ok {
			b64, ok = strings.CutSuffix(b64, ":")
		}
		sum, err := base64.StdEncoding.DecodeString(b64)
		if !ok || err != nil || len(sum) != sha256.Size {
			return nil, errInvalid("Repr-Digest %q: want sha-256=:BASE64: with the file's 32-byte SHA-256", v)
		}
		return sum, nil
	}
	return nil, nil
}

// chunkHasher hashes an upload as it streams: each chunk for the root
// digest and, when the client sent one to check, the whole file.
type chunkHasher struct {
	size    int
	whole   hash.Hash // nil: not wanted
	chunk   hash.Hash
	in      int // bytes in the current chunk
	digests []manifest.Digest
}

func newChunkHasher(chunkSize int, whole bool) *chunkHasher {
	h := &chunkHasher{size: chunkSize, chunk: sha256.New()}
	if whole {
		h.whole = sha256.New()
	}
	return h
}

func (h *chunkHasher) Write(p []byte) (int, error) {
	n := len(p)
	if h.whole != nil {
		h.whole.Write(p)
	}
	for len(p) > 0 {
		k := min(len(p), h.size-h.in)
		h.chunk.Write(p[:k])
		h.in += k
		p = p[k:]
		if h.in == h.size {
			h.endChunk()
		}
	}
	return n, nil
}

func (h *chunkHasher) endChunk() {
	var d manifest.Digest
	h.chunk.Sum(d[:0])
	h.digests = append(h.digests, d)
	h.chunk.Reset()
	h.in = 0
}

// root returns the root digest of everything written.
func (h *chunkHasher) root() manifest.Digest {
	if h.in > 0 {
		h.endChunk()
	}
	return manifest.RootOf(h.digests)
}

// sum returns the whole file's SHA-256.
func (h *chunkHasher) sum() []byte { return h.whole.Sum(nil) }
