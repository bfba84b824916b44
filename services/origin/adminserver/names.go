package adminserver

import (
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/p2pd/p2pd/internal/manifest"
	"google.golang.org/grpc/codes"
)

// checkName checks a name to publish or upload under, telling apart a
// name that tries to leave the media directory from one that is merely
// invalid.
// maxSegment is the longest segment of a name: a file or directory name
// on the media disk (NAME_MAX on Linux), so a name that could never be
// stored is refused before its body is read.
const maxSegment = 255

func checkName(name string) error {
	if strings.HasPrefix(name, "/") || slices.Contains(strings.Split(name, "/"), "..") {
		return newError(CodeOutsideMediaDir, http.StatusBadRequest, codes.InvalidArgument, nil,
			"name %q escapes the media directory: use a relative path without .. segments, like films/movie.mp4", name)
	}
	if err := manifest.CheckName(name); err != nil {
		return newError(CodeInvalidName, http.StatusBadRequest, codes.InvalidArgument, err,
			"%v: a name is a clean, slash-separated relative path like films/movie.mp4", err)
	}
	for _, seg := range strings.Split(name, "/") {
		if len(seg) > maxSegment {
			return newError(CodeInvalidName, http.StatusBadRequest, codes.InvalidArgument, nil,
				"name %.80q...: a segment is %d bytes, at most %d allowed (the file system's limit for one file or directory name)", name, len(seg), maxSegment)
		}
	}
	if hidden(name) {
		return newError(CodeInvalidName, http.StatusBadRequest, codes.InvalidArgument, nil,
			"name %q has a segment starting with '.': such files are never published (uploads in progress use them); choose another name", name)
	}
	return nil
}

// hidden matches the origin's rule: a segment starting with a dot.
func hidden(name string) bool {
	return strings.HasPrefix(name, ".") || strings.Contains(name, "/.")
}

// resolvePath turns a publish path (relative to the media directory, or
// absolute inside it) into the published name.
func (s *Server) resolvePath(p string) (string, error) {
	if p == "" {
		return "", errInvalid(`path is required: the file's path relative to the media directory %s, e.g. {"path": "films/movie.mp4"}`, s.cfg.MediaDir)
	}
	rel := p
	if filepath.IsAbs(p) {
		r, err := filepath.Rel(s.cfg.MediaDir, filepath.Clean(p))
		if err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
			return "", newError(CodeOutsideMediaDir, http.StatusBadRequest, codes.InvalidArgument, err,
				"%s is outside the media directory %s: copy the file there first, or upload it (p2pd admin publish FILE)", p, s.cfg.MediaDir)
		}
		rel = r
	}
	name := path.Clean(filepath.ToSlash(rel))
	if name == ".." || strings.HasPrefix(name, "../") {
		return "", newError(CodeOutsideMediaDir, http.StatusBadRequest, codes.InvalidArgument, nil,
			"%s is outside the media directory %s: copy the file there first, or upload it (p2pd admin publish FILE)", p, s.cfg.MediaDir)
	}
	if err := checkName(name); err != nil {
		return "", err
	}
	return name, nil
}

// statRegular checks that name is a regular file inside the media
// directory, reached without leaving it through a symlink.
func (s *Server) statRegular(name string) (fs.FileInfo, error) {
	st, err := s.media.Lstat(filepath.FromSlash(name))
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		// ENOTDIR: a segment of the path is a file ("a.mp4/x"); nothing
		// is there either (found by FuzzRequest: it was a 500).
		return nil, newError(CodePathNotFound, http.StatusNotFound, codes.NotFound, err,
			"no file %s under the media directory %s: check the path (it is relative to the media directory), or upload the file (p2pd admin publish FILE)", name, s.cfg.MediaDir)
	case err != nil && isEscape(err):
		return nil, newError(CodeOutsideMediaDir, http.StatusBadRequest, codes.InvalidArgument, err,
			"%s leads outside the media directory %s through a symbolic link: copy the file into the media directory instead", name, s.cfg.MediaDir)
	case err != nil:
		return nil, errInternal(err, "stat "+name)
	case !st.Mode().IsRegular():
		return nil, newError(CodeNotRegularFile, http.StatusBadRequest, codes.InvalidArgument, nil,
			"%s is not a regular file (%s): only regular files are published, symbolic links are not followed", name, st.Mode().Type())
	}
	return st, nil
}

// isEscape reports os.Root's refusal to follow a path out of the root.
// The error is not exported; its text is all there is to go on.
func isEscape(err error) bool {
	var pe *os.PathError
	return errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "escapes")
}
