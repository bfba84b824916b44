package adminserver

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/p2pd/p2pd/services/origin/originserver"
)

// FuzzRequest: any method, path, token and body sent to the admin API.
// Without the right token nothing but the spec and the dashboard answers
// 2xx and the media directory is untouched; with it, no input makes the
// API fail with an internal error, and nothing is ever written outside
// the media directory.
func FuzzRequest(f *testing.F) {
	parent := f.TempDir()
	media := filepath.Join(parent, "media")
	if err := os.MkdirAll(filepath.Join(media, "films"), 0o755); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(media, "films", "a.mp4"), bytes.Repeat([]byte("p2pd"), 5000), 0o644); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(parent, "secret"), []byte("outside"), 0o600); err != nil {
		f.Fatal(err)
	}
	origin, err := originserver.New(originserver.Config{MediaDir: media, ChunkSize: testChunk, Advertise: "fuzz"}, nil)
	if err != nil {
		f.Fatal(err)
	}
	if err := origin.Scan(context.Background()); err != nil {
		f.Fatal(err)
	}
	api, err := New(Config{Token: testToken, MediaDir: media, ChunkSize: testChunk, MaxUploadBytes: 1 << 20, ReserveBytes: 1, Logger: quiet()}, origin, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { api.Close() })
	h := api.Handler()
	methods := []string{"GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS"}

	for _, s := range []struct {
		method uint8
		path   string
		auth   bool
		body   string
	}{
		{0, "/v1/files", true, ""},
		{0, "/v1/files/films/a.mp4", true, ""},
		{2, "/v1/files", true, `{"path": "films/a.mp4"}`},
		{2, "/v1/files", true, `{"path": "../secret"}`},
		{2, "/v1/files", true, `{"path": "/etc/passwd"}`},
		{1, "/v1/files/new.mp4", true, "hello"},
		{1, "/v1/files/../secret", true, "pwned"},
		{1, "/v1/files/%2e%2e/secret", true, "pwned"},
		{1, "/v1/files/.upload-x", true, "x"},
		{3, "/v1/files/films/a.mp4", false, ""},
		{1, "/v1/files/x.mp4", false, "x"},
		{0, "/v1/nodes", true, ""},
		{0, "/v1/stats", true, ""},
		{0, "/v1/openapi.json", false, ""},
		{2, "/v1/files", true, `{"path": 7}`},
		{2, "/v1/files", true, `{`},
	} {
		f.Add(s.method, s.path, s.auth, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, method uint8, path string, auth bool, body []byte) {
		u, err := url.ParseRequestURI(path)
		if err != nil || u.Host != "" || u.Scheme != "" {
			return // not a request target a server would accept
		}
		m := methods[int(method)%len(methods)]
		before := listAll(t, parent)
		req := httptest.NewRequest(m, "/", bytes.NewReader(body))
		req.URL, req.RequestURI = u, path
		if auth {
			req.Header.Set("Authorization", "Bearer "+testToken)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		after := listAll(t, parent)
		if extra := outside(after, before); len(extra) > 0 {
			t.Fatalf("%s %s wrote outside the media directory: %v", m, path, extra)
		}
		public := strings.HasPrefix(u.Path, "/ui/") || u.Path == "/v1/openapi.json"
		switch {
		case !auth && !public && rec.Code < 300:
			t.Fatalf("%s %s without a token: %d %.200s", m, path, rec.Code, rec.Body)
		case !auth && !slices.Equal(before, after):
			t.Fatalf("%s %s without a token changed the media directory", m, path)
		case rec.Code == http.StatusInternalServerError:
			t.Fatalf("%s %s: internal error: %.300s", m, path, rec.Body)
		}
	})
}

// listAll returns every path under dir, relative to it.
func listAll(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if rel, _ := filepath.Rel(dir, p); err == nil && rel != "." {
			out = append(out, rel)
		}
		return nil
	})
	return out
}

// outside returns the new paths of after that are not under media/.
func outside(after, before []string) []string {
	var out []string
	for _, p := range after {
		if p != "media" && !strings.HasPrefix(p, "media"+string(filepath.Separator)) && !slices.Contains(before, p) {
			out = append(out, p)
		}
	}
	return out
}
