package adminserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/services/tracker/trackerclient"
	"github.com/p2pd/p2pd/services/tracker/trackertest"
	"github.com/prometheus/client_golang/prometheus"
)

func TestAuth(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name, path, auth string
		status           int
		code             string
	}{
		{"no token", "/v1/files", "", 401, CodeUnauthenticated},
		{"wrong token", "/v1/files", "Bearer nope", 401, CodeUnauthenticated},
		{"token prefix", "/v1/files", "Bearer " + testToken[:5], 401, CodeUnauthenticated},
		{"token plus more", "/v1/files", "Bearer " + testToken + "x", 401, CodeUnauthenticated},
		{"basic scheme", "/v1/files", "Basic " + testToken, 401, CodeUnauthenticated},
		{"bare token", "/v1/files", testToken, 401, CodeUnauthenticated},
		{"upload without token", "/v1/files/x.mp4", "", 401, CodeUnauthenticated},
		{"nodes", "/v1/nodes", "Bearer " + testToken, 200, ""},
		{"lower-case scheme", "/v1/stats", "bearer " + testToken, 200, ""},
		{"spec needs no token", "/v1/openapi.json", "", 200, ""},
		{"dashboard needs no token", "/ui/", "", 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := "GET"
			if strings.HasPrefix(tc.name, "upload") {
				method = "PUT"
			}
			code, body, hdr := e.do(method, tc.path, strings.NewReader("x"), "Authorization", tc.auth)
			if code != tc.status {
				t.Fatalf("status %d, want %d: %s", code, tc.status, body)
			}
			if tc.code == "" {
				return
			}
			if ae := decodeErr(t, body); ae.Code != tc.code || ae.Status != tc.status {
				t.Fatalf("error %+v, want code %s", ae, tc.code)
			}
			if !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") || hdr.Get("Content-Type") != "application/json" {
				t.Fatalf("headers %v", hdr)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(e.media, "x.mp4")); !os.IsNotExist(err) {
		t.Fatalf("an unauthenticated upload stored a file: %v", err)
	}
}

func TestAdminDisabledWithoutToken(t *testing.T) {
	e := newEnvWith(t, envOptions{})
	for _, auth := range []string{"", "Bearer ", "Bearer x"} {
		code, body, _ := e.do("GET", "/v1/files", nil, "Authorization", auth)
		if ae := decodeErr(t, body); code != 503 || ae.Code != CodeAdminDisabled || !strings.Contains(ae.Message, "--admin-token-file") {
			t.Fatalf("auth %q: %d %+v", auth, code, ae)
		}
	}
}

func TestPublishFromMediaDir(t *testing.T) {
	e := newEnv(t)
	data := e.writeMedia("films/a.mp4", 3*testChunk+100) // after the origin's scan: not published yet
	abs := e.writeMedia("abs.webm", 10)
	_ = abs
	var got struct{ File jsonFile }
	if code, ae := e.doJSON("POST", "/v1/files", map[string]any{"path": "films/a.mp4"}, &got); code != 200 {
		t.Fatalf("publish: %d %+v", code, ae)
	}
	if got.File.Name != "films/a.mp4" || got.File.Size != fmt.Sprint(len(data)) || got.File.ChunkCount != 4 ||
		got.File.Root != rootOf(t, data) || got.File.ContentType != "video/mp4" || got.File.Etag == "" {
		t.Fatalf("published %+v", got.File)
	}
	resp, err := e.tracker.GetFile(context.Background(), &trackerv1.GetFileRequest{Name: "films/a.mp4"})
	if err != nil || fmt.Sprintf("%x", resp.File.Root) != got.File.Root {
		t.Fatalf("tracker has %v, %v", resp, err)
	}
	// An absolute path inside the media directory names the same file.
	if code, ae := e.doJSON("POST", "/v1/files", map[string]any{"path": filepath.Join(e.media, "abs.webm")}, &got); code != 200 || got.File.Name != "abs.webm" {
		t.Fatalf("publish absolute: %d %+v %+v", code, ae, got.File)
	}
}

func TestPublishErrors(t *testing.T) {
	e := newEnv(t)
	e.writeMedia("films/a.mp4", 100)
	e.writeMedia(".hidden.mp4", 100)
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret.mp4"), []byte("secret"), 0o644)
	os.Symlink(filepath.Join(outside, "secret.mp4"), filepath.Join(e.media, "link.mp4"))
	os.Symlink(outside, filepath.Join(e.media, "linkdir"))
	if code, ae := e.doJSON("POST", "/v1/files", map[string]any{"path": "films/a.mp4"}, nil); code != 200 {
		t.Fatalf("publish: %d %+v", code, ae)
	}
	for _, tc := range []struct {
		name   string
		body   any
		status int
		code   string
		hint   string // part of the message that tells what to do
	}{
		{"missing path", map[string]any{}, 400, CodeInvalidArgument, "path is required"},
		{"not JSON", "{", 400, CodeInvalidArgument, "invalid request"},
		{"unknown field", map[string]any{"path": "films/a.mp4", "bogus": 1}, 400, CodeInvalidArgument, "bogus"},
		{"missing file", map[string]any{"path": "films/nope.mp4"}, 404, CodePathNotFound, "upload"},
		{"dot-dot", map[string]any{"path": "../secret.mp4"}, 400, CodeOutsideMediaDir, "outside the media directory"},
		{"dot-dot inside", map[string]any{"path": "films/../../x"}, 400, CodeOutsideMediaDir, "copy the file"},
		{"absolute outside", map[string]any{"path": filepath.Join(outside, "secret.mp4")}, 400, CodeOutsideMediaDir, "outside the media directory"},
		{"through a symlinked dir", map[string]any{"path": "linkdir/secret.mp4"}, 400, CodeOutsideMediaDir, "symbolic link"},
		{"symlink", map[string]any{"path": "link.mp4"}, 400, CodeNotRegularFile, "symbolic links are not followed"},
		{"directory", map[string]any{"path": "films"}, 400, CodeNotRegularFile, "regular file"},
		{"hidden", map[string]any{"path": ".hidden.mp4"}, 400, CodeInvalidName, "never published"},
		{"duplicate", map[string]any{"path": "films/a.mp4"}, 409, CodeAlreadyPublished, `"replace": true`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if s, ok := tc.body.(string); ok {
				body = strings.NewReader(s)
			} else {
				b, _ := json.Marshal(tc.body)
				body = bytes.NewReader(b)
			}
			code, b, _ := e.do("POST", "/v1/files", body)
			ae := decodeErr(t, b)
			if code != tc.status || ae.Code != tc.code || ae.Status != tc.status || !strings.Contains(ae.Message, tc.hint) {
				t.Fatalf("got %d %+v, want %d %s with %q", code, ae, tc.status, tc.code, tc.hint)
			}
		})
	}
	if _, ok := e.origin.Lookup("linkdir/secret.mp4"); ok {
		t.Fatal("a file outside the media directory was published")
	}
	// replace publishes a changed file as a new version.
	data := e.writeMedia("films/a.mp4", 200)
	var got struct{ File jsonFile }
	if code, ae := e.doJSON("POST", "/v1/files", map[string]any{"path": "films/a.mp4", "replace": true}, &got); code != 200 || got.File.Root != rootOf(t, data) {
		t.Fatalf("replace: %d %+v %+v", code, ae, got.File)
	}
}

func TestUpload(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name, path string // path is the escaped URL path after /v1/files/
		size       int
		digest     bool
	}{
		{"films/new.mp4", "films/new.mp4", 5*testChunk + 7, true},
		{"deep/er/dir/x.webm", "deep/er/dir/x.webm", testChunk, false},
		{"films/my movie é.mp4", "films/my%20movie%20%C3%A9.mp4", 1000, true},
		{"empty.ts", "empty.ts", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := make([]byte, tc.size)
			for i := range data {
				data[i] = byte(i * 7)
			}
			hdr := []string{"Content-Type", "application/octet-stream"}
			if tc.digest {
				hdr = append(hdr, "Repr-Digest", reprDigest(data))
			}
			code, body, h := e.do("PUT", "/v1/files/"+tc.path, bytes.NewReader(data), hdr...)
			if code != 201 {
				t.Fatalf("upload: %d %s", code, body)
			}
			var got struct{ File jsonFile }
			json.Unmarshal(body, &got)
			if got.File.Name != tc.name || got.File.Size != fmt.Sprint(tc.size) || got.File.Root != rootOf(t, data) {
				t.Fatalf("uploaded %+v", got.File)
			}
			if h.Get("Location") != "/v1/files/"+tc.path {
				t.Fatalf("Location %q", h.Get("Location"))
			}
			onDisk, err := os.ReadFile(filepath.Join(e.media, filepath.FromSlash(tc.name)))
			if err != nil || !bytes.Equal(onDisk, data) {
				t.Fatalf("on disk: %d bytes, %v", len(onDisk), err)
			}
			// Edges can serve it as soon as the upload returns: the
			// tracker lists the origin as its holder.
			var shown jsonFileDetail
			if code, ae := e.doJSON("GET", "/v1/files/"+tc.path, nil, &shown); code != 200 || shown.File.Root != got.File.Root {
				t.Fatalf("show: %d %+v", code, ae)
			}
			if tc.size > 0 && (len(shown.Holders) != 1 || shown.Holders[0].NodeID != "origin-1" || shown.Holders[0].Chunks != shown.File.ChunkCount) {
				t.Fatalf("holders right after the upload: %+v", shown.Holders)
			}
		})
	}
	if l := e.leftovers(); len(l) > 0 {
		t.Fatalf("upload files left behind: %v", l)
	}
}

func TestUploadErrors(t *testing.T) {
	e := newEnvWith(t, envOptions{token: testToken, maxUpload: 10 * testChunk})
	e.writeMedia("stored.mp4", 10) // on disk, not published
	if code, _, _ := e.do("PUT", "/v1/files/taken.mp4", strings.NewReader("first")); code != 201 {
		t.Fatalf("first upload: %d", code)
	}
	data := []byte("some bytes")
	for _, tc := range []struct {
		name, path string
		body       []byte
		hdr        []string
		status     int
		code       string
		hint       string
	}{
		{"published name", "taken.mp4", data, nil, 409, CodeAlreadyExists, "replace=true"},
		{"stored name", "stored.mp4", data, nil, 409, CodeAlreadyExists, "--name"},
		{"a directory's name", "taken.mp4/x", data, nil, 409, CodeAlreadyExists, "choose another name"},
		{"escaping name", "..%2Fescape.mp4", data, nil, 400, CodeOutsideMediaDir, "without .. segments"},
		{"escaping deeper", "a/..%2F..%2Fescape.mp4", data, nil, 400, CodeOutsideMediaDir, "escapes the media directory"},
		{"hidden name", ".upload-sneaky", data, nil, 400, CodeInvalidName, "never published"},
		{"hidden dir", "a/.b/c.mp4", data, nil, 400, CodeInvalidName, "never published"},
		{"empty name", "", data, nil, 400, CodeInvalidName, "relative path"},
		{"backslash", `a\b.mp4`, data, nil, 400, CodeInvalidName, "relative path"},
		{"digest mismatch", "bad.mp4", data, []string{"Repr-Digest", reprDigest([]byte("other"))}, 400, CodeDigestMismatch, "send it again"},
		{"bad digest header", "bad.mp4", data, []string{"Repr-Digest", "sha-256=:nope:"}, 400, CodeInvalidArgument, "sha-256=:BASE64:"},
		{"bad replace", "x.mp4?replace=maybe", data, nil, 400, CodeInvalidArgument, "true or false"},
		{"segment too long", strings.Repeat("a", 252) + ".mp4", data, nil, 400, CodeInvalidName, "at most 255"},
		{"over the limit", "big.mp4", make([]byte, 10*testChunk+1), nil, 413, CodeTooLarge, "publish it by path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, b, _ := e.do("PUT", "/v1/files/"+tc.path, bytes.NewReader(tc.body), tc.hdr...)
			ae := decodeErr(t, b)
			if code != tc.status || ae.Code != tc.code || !strings.Contains(ae.Message, tc.hint) {
				t.Fatalf("got %d %+v, want %d %s with %q", code, ae, tc.status, tc.code, tc.hint)
			}
		})
	}
	for _, name := range []string{"bad.mp4", "big.mp4", "escape.mp4", "x.mp4"} {
		if _, err := os.Lstat(filepath.Join(e.media, name)); !os.IsNotExist(err) {
			t.Errorf("%s stored after a refused upload: %v", name, err)
		}
		if _, ok := e.origin.Lookup(name); ok {
			t.Errorf("%s published after a refused upload", name)
		}
	}
	if _, err := os.Lstat(filepath.Join(filepath.Dir(e.media), "escape.mp4")); !os.IsNotExist(err) {
		t.Errorf("an upload escaped the media directory: %v", err)
	}
	if l := e.leftovers(); len(l) > 0 {
		t.Fatalf("upload files left behind: %v", l)
	}

	t.Run("replace", func(t *testing.T) {
		code, b, _ := e.do("PUT", "/v1/files/taken.mp4?replace=true", strings.NewReader("second version"))
		var got struct{ File jsonFile }
		json.Unmarshal(b, &got)
		if code != 201 || got.File.Root != rootOf(t, []byte("second version")) {
			t.Fatalf("replace: %d %s", code, b)
		}
	})
}

// TestUploadTooLargeForDisk sends a Content-Length no disk has: the upload
// is refused before a byte of it is read.
func TestUploadTooLargeForDisk(t *testing.T) {
	e := newEnv(t)
	resp := rawRequest(t, e.url, "PUT /v1/files/huge.mp4 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+testToken+
		"\r\nContent-Length: 1152921504606846976\r\n\r\nonly a few bytes")
	ae := decodeErr(t, resp.body)
	if resp.status != 507 || ae.Code != CodeInsufficientStorage || !strings.Contains(ae.Message, "bigger disk") {
		t.Fatalf("got %d %+v", resp.status, ae)
	}
	if l := e.leftovers(); len(l) > 0 {
		t.Fatalf("upload files left behind: %v", l)
	}
}

// TestUploadCutOff breaks uploads off halfway: nothing is published and
// no file remains, visible or hidden.
func TestUploadCutOff(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers string
		part    string
	}{
		{"content-length", "Content-Length: 1048576\r\n", strings.Repeat("x", 300<<10)},
		{"chunked", "Transfer-Encoding: chunked\r\n", fmt.Sprintf("%x\r\n%s\r\n", 300<<10, strings.Repeat("x", 300<<10))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			c, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(c, "PUT /v1/files/films/cut.mp4 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n%s\r\n%s", testToken, tc.headers, tc.part)
			// The upload is under way once its hidden file exists.
			trackertest.EventuallyOK(t, "upload started", func() error {
				if len(e.leftovers()) == 0 {
					return fmt.Errorf("no upload file yet")
				}
				return nil
			})
			c.Close()
			trackertest.EventuallyOK(t, "upload file removed", func() error {
				if l := e.leftovers(); len(l) > 0 {
					return fmt.Errorf("left: %v", l)
				}
				return nil
			})
			if _, ok := e.origin.Lookup("films/cut.mp4"); ok {
				t.Fatal("a cut-off upload was published")
			}
			entries, _ := os.ReadDir(e.media)
			if len(entries) != 0 {
				t.Fatalf("media directory not empty: %v", entries)
			}
			if code, ae := e.doJSON("GET", "/v1/files/films/cut.mp4", nil, nil); code != 404 || ae.Code != CodeNotPublished {
				t.Fatalf("show: %d %+v", code, ae)
			}
		})
	}
}

func TestListShowDelete(t *testing.T) {
	e := newEnv(t)
	for _, n := range []string{"b.mp4", "a/one.mp4", "c.webm"} {
		if code, b, _ := e.do("PUT", "/v1/files/"+n, strings.NewReader("data of "+n)); code != 201 {
			t.Fatalf("upload %s: %d %s", n, code, b)
		}
	}
	var list struct{ Files []jsonFile }
	if code, ae := e.doJSON("GET", "/v1/files", nil, &list); code != 200 {
		t.Fatalf("ls: %d %+v", code, ae)
	}
	var names []string
	for _, f := range list.Files {
		names = append(names, f.Name)
		if f.PublishedTime == "" {
			t.Errorf("%s: no published time", f.Name)
		}
	}
	if !slices.Equal(names, []string{"a/one.mp4", "b.mp4", "c.webm"}) {
		t.Fatalf("ls: %v", names)
	}

	for _, tc := range []struct {
		name, method, path string
		status             int
		code               string
	}{
		{"show unknown", "GET", "/v1/files/nope.mp4", 404, CodeNotPublished},
		{"delete unknown", "DELETE", "/v1/files/nope.mp4", 404, CodeNotPublished},
		{"show escaping", "GET", "/v1/files/..%2Fx", 400, CodeOutsideMediaDir},
		{"unknown route", "GET", "/v1/bogus", 404, CodeNotFound},
		{"wrong method", "PATCH", "/v1/files", 405, CodeMethodNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, ae := e.doJSON(tc.method, tc.path, nil, nil)
			if code != tc.status || ae.Code != tc.code {
				t.Fatalf("got %d %+v, want %d %s", code, ae, tc.status, tc.code)
			}
		})
	}

	t.Run("delete", func(t *testing.T) {
		if code, ae := e.doJSON("DELETE", "/v1/files/a/one.mp4", nil, nil); code != 200 {
			t.Fatalf("delete: %d %+v", code, ae)
		}
		if _, err := os.Stat(filepath.Join(e.media, "a", "one.mp4")); !os.IsNotExist(err) {
			t.Fatalf("file still on disk: %v", err)
		}
		if _, err := e.tracker.GetFile(context.Background(), &trackerv1.GetFileRequest{Name: "a/one.mp4"}); err == nil {
			t.Fatal("tracker still lists the file")
		}
		if code, ae := e.doJSON("GET", "/v1/files/a/one.mp4", nil, nil); code != 404 || ae.Code != CodeNotPublished {
			t.Fatalf("show after delete: %d %+v", code, ae)
		}
		if code, ae := e.doJSON("DELETE", "/v1/files/a/one.mp4", nil, nil); code != 404 || ae.Code != CodeNotPublished {
			t.Fatalf("delete again: %d %+v", code, ae)
		}
	})
	t.Run("delete keeping the file", func(t *testing.T) {
		if code, ae := e.doJSON("DELETE", "/v1/files/b.mp4?keepFile=true", nil, nil); code != 200 {
			t.Fatalf("delete: %d %+v", code, ae)
		}
		if _, err := os.Stat(filepath.Join(e.media, "b.mp4")); err != nil {
			t.Fatalf("kept file: %v", err)
		}
		if _, ok := e.origin.Lookup("b.mp4"); ok {
			t.Fatal("still published")
		}
	})
}

func TestNodesAndChunkMap(t *testing.T) {
	e := newEnv(t)
	e.writeMedia("films/a.mp4", 4*testChunk)
	if code, ae := e.doJSON("POST", "/v1/files", map[string]any{"path": "films/a.mp4"}, nil); code != 200 {
		t.Fatalf("publish: %d %+v", code, ae)
	}
	m, _ := e.origin.Lookup("films/a.mp4")
	cache := e.joinCachenode("cache-1", m, 0, 2)

	var detail jsonFileDetail
	trackertest.EventuallyOK(t, "cachenode's holdings visible", func() error {
		if code, ae := e.doJSON("GET", "/v1/files/films/a.mp4?chunkMap=true", nil, &detail); code != 200 {
			return fmt.Errorf("%d %+v", code, ae)
		}
		if len(detail.Holders) != 2 {
			return fmt.Errorf("holders %+v", detail.Holders)
		}
		return nil
	})
	want := []jsonHolder{
		{NodeID: "cache-1", Role: "cachenode", Chunks: 2, ChunkMap: []byte{0b0101}},
		{NodeID: "origin-1", Role: "origin", Chunks: 4, ChunkMap: []byte{0b1111}},
	}
	for i, h := range detail.Holders {
		if h.NodeID != want[i].NodeID || h.Role != want[i].Role || h.Chunks != want[i].Chunks || !bytes.Equal(h.ChunkMap, want[i].ChunkMap) {
			t.Errorf("holder %d: %+v, want %+v", i, h, want[i])
		}
	}
	if detail.File.CachedOnNodes != 1 || detail.File.CachedChunks != "2" {
		t.Errorf("file: %+v", detail.File)
	}
	var plain jsonFileDetail
	if e.doJSON("GET", "/v1/files/films/a.mp4", nil, &plain); len(plain.Holders) != 2 || len(plain.Holders[0].ChunkMap) != 0 {
		t.Errorf("without chunkMap: %+v", plain.Holders)
	}

	// The cachenode measured 1 MiB/s from the origin.
	if _, err := cache.ReportRate(context.Background(), &trackerv1.ReportRateRequest{Samples: []*trackerv1.RateSample{{Source: "origin-1", Bytes: 1 << 20, DurationNanos: int64(time.Second)}}}); err != nil {
		t.Fatal(err)
	}
	var nodes struct{ Nodes []jsonNode }
	trackertest.EventuallyOK(t, "cachenode load reported", func() error {
		if code, ae := e.doJSON("GET", "/v1/nodes", nil, &nodes); code != 200 {
			return fmt.Errorf("%d %+v", code, ae)
		}
		if len(nodes.Nodes) != 2 || nodes.Nodes[0].Load != 2 {
			return fmt.Errorf("nodes %+v", nodes.Nodes)
		}
		return nil
	})
	if o := nodes.Nodes[1]; o.Rate != 1<<20 || nodes.Nodes[0].Rate != 0 {
		t.Errorf("rates: origin %v, cachenode %v", o.Rate, nodes.Nodes[0].Rate)
	}
	c, o := nodes.Nodes[0], nodes.Nodes[1]
	if c.ID != "cache-1" || c.Role != "cachenode" || c.Files != 1 || c.Chunks != "2" || c.UpSince == "" ||
		o.ID != "origin-1" || o.Role != "origin" || o.GrpcAddr != "127.0.0.1:7100" || o.Chunks != "4" {
		t.Fatalf("nodes %+v", nodes.Nodes)
	}
}

func TestStats(t *testing.T) {
	e := newEnv(t)
	served := prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricCacheServed, Help: "test"}, []string{"source"})
	e.reg.MustRegister(served)
	served.WithLabelValues("local").Add(300)
	served.WithLabelValues("origin").Add(100)
	e.writeMedia("a.mp4", 2*testChunk)
	e.doJSON("POST", "/v1/files", map[string]any{"path": "a.mp4"}, nil)
	m, _ := e.origin.Lookup("a.mp4")
	e.joinCachenode("cache-1", m, 0)

	var s struct {
		NodesByRole         map[string]int    `json:"nodesByRole"`
		Files               int               `json:"files"`
		PublishedBytes      string            `json:"publishedBytes"`
		PublishedChunks     string            `json:"publishedChunks"`
		CachedBytes         string            `json:"cachedBytes"`
		CacheCapacityBytes  string            `json:"cacheCapacityBytes"`
		CacheReplication    float64           `json:"cacheReplication"`
		ActiveStreams       string            `json:"activeStreams"`
		OriginEgressBytes   string            `json:"originEgressBytes"`
		BytesServedBySource map[string]string `json:"bytesServedBySource"`
		HitRatio            float64           `json:"hitRatio"`
	}
	trackertest.EventuallyOK(t, "cachenode in the stats", func() error {
		if code, ae := e.doJSON("GET", "/v1/stats", nil, &s); code != 200 {
			return fmt.Errorf("%d %+v", code, ae)
		}
		if s.NodesByRole["cachenode"] != 1 || s.CacheReplication != 0.5 || s.ActiveStreams != "2" {
			return fmt.Errorf("stats %+v", s)
		}
		return nil
	})
	if s.NodesByRole["origin"] != 1 || s.Files != 1 || s.PublishedBytes != fmt.Sprint(2*testChunk) || s.PublishedChunks != "2" ||
		s.CachedBytes != fmt.Sprint(testChunk) || s.CacheCapacityBytes != fmt.Sprint(1<<30) || s.OriginEgressBytes != "0" ||
		s.BytesServedBySource["local"] != "300" || s.BytesServedBySource["origin"] != "100" || s.HitRatio != 0.75 {
		t.Fatalf("stats %+v", s)
	}
}

func TestTrackerUnavailable(t *testing.T) {
	e := newEnv(t)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()
	tc, err := trackerclient.Dial(dead)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	s, err := New(Config{Token: testToken, MediaDir: e.media, ChunkSize: testChunk, TrackerTimeout: time.Second, Logger: quiet()}, e.origin, tc)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, path := range []string{"/v1/nodes", "/v1/files", "/v1/stats"} {
		rec := httptestDo(s.Handler(), "GET", path)
		ae := decodeErr(t, rec.body)
		if rec.status != 503 || ae.Code != CodeTrackerUnavailable || !strings.Contains(ae.Message, "check that it runs") {
			t.Fatalf("%s: %d %+v", path, rec.status, ae)
		}
	}
}

func TestOpenAPI(t *testing.T) {
	e := newEnv(t)
	code, body, hdr := e.do("GET", "/v1/openapi.json", nil)
	if code != 200 || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("spec: %d %v", code, hdr)
	}
	var spec struct {
		Swagger string `json:"swagger"`
		Paths   map[string]map[string]struct {
			OperationID string   `json:"operationId"`
			Consumes    []string `json:"consumes"`
			Parameters  []struct {
				Name, In string
				Schema   map[string]any
			} `json:"parameters"`
			Responses map[string]any `json:"responses"`
		} `json:"paths"`
		Definitions         map[string]any `json:"definitions"`
		SecurityDefinitions map[string]any `json:"securityDefinitions"`
	}
	if err := json.Unmarshal(body, &spec); err != nil {
		t.Fatalf("spec is not JSON: %v", err)
	}
	if spec.Swagger != "2.0" || spec.SecurityDefinitions["bearer"] == nil || spec.Definitions["v1Error"] == nil {
		t.Fatalf("spec header: %s %v", spec.Swagger, spec.SecurityDefinitions)
	}
	// Every route the server has is in the spec, and nothing else.
	routes := map[string]string{
		"GET /v1/files":            "AdminService_ListFiles",
		"POST /v1/files":           "AdminService_PublishFile",
		"GET /v1/files/{name}":     "AdminService_GetFile",
		"PUT /v1/files/{name}":     "AdminService_UploadFile",
		"DELETE /v1/files/{name}":  "AdminService_DeleteFile",
		"GET /v1/nodes":            "AdminService_ListNodes",
		"GET /v1/stats":            "AdminService_GetStats",
		"POST /v1/prewarm":         "AdminService_PrewarmFile",
		"POST /v1/purge":           "AdminService_PurgeFile",
		"GET /v1/traces/{traceId}": "AdminService_GetTrace",
	}
	seen := 0
	for path, ops := range spec.Paths {
		for method, op := range ops {
			key := strings.ToUpper(method) + " " + path
			if routes[key] != op.OperationID {
				t.Errorf("spec has %s as %q", key, op.OperationID)
			}
			seen++
			if op.Responses["default"] == nil {
				t.Errorf("%s: no error response", key)
			}
			// The route answers: an API answer, never "no such route".
			code, b, _ := e.do(strings.ToUpper(method), strings.ReplaceAll(path, "{name}", "no/such.mp4"), strings.NewReader("{}"))
			if code == 404 || code == 405 {
				if ae := decodeErr(t, b); ae.Code == CodeNotFound || ae.Code == CodeMethodNotAllowed {
					t.Errorf("%s is in the spec but not served: %+v", key, ae)
				}
			}
		}
	}
	if seen != len(routes) {
		t.Errorf("spec has %d operations, want %d", seen, len(routes))
	}
	put := spec.Paths["/v1/files/{name}"]["put"]
	var body0 map[string]any
	for _, p := range put.Parameters {
		if p.In == "body" {
			body0 = p.Schema
		}
	}
	if body0["format"] != "binary" || !slices.Contains(put.Consumes, "application/octet-stream") || put.Responses["201"] == nil || put.Responses["200"] != nil {
		t.Fatalf("upload operation: %+v", put)
	}
}

func TestDashboardServed(t *testing.T) {
	e := newEnv(t)
	for _, p := range []string{"/ui/", "/ui/app.js", "/ui/style.css"} {
		code, body, hdr := e.do("GET", p, nil)
		if code != 200 || len(body) == 0 || !strings.Contains(hdr.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Fatalf("%s: %d, %d bytes, %v", p, code, len(body), hdr)
		}
	}
	if code, _, hdr := e.do("GET", "/ui", nil); code != 200 && code != 301 {
		t.Fatalf("/ui: %d %v", code, hdr)
	}
}

// rawResponse is an answer read off a raw connection.
type rawResponse struct {
	status int
	body   []byte
}

// rawRequest writes req verbatim to the server at base and reads the
// answer, for requests http.Client will not send.
func rawRequest(t *testing.T, base, req string) rawResponse {
	t.Helper()
	u, _ := url.Parse(base)
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(c, req)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return rawResponse{resp.StatusCode, b}
}

// httptestDo serves one request through h.
func httptestDo(h http.Handler, method, path string) rawResponse {
	rec := &recorder{header: http.Header{}}
	req, _ := http.NewRequest(method, path, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	h.ServeHTTP(rec, req)
	return rawResponse{rec.status, rec.body.Bytes()}
}

type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = 200
	}
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(code int) { r.status = code }

func TestStaleUploadsRemoved(t *testing.T) {
	e := newEnv(t)
	stale, fresh := filepath.Join(e.media, uploadPrefix+"crashed"), filepath.Join(e.media, uploadPrefix+"live")
	for _, p := range []string{stale, fresh} {
		os.WriteFile(p, []byte("partial"), 0o600)
	}
	old := time.Now().Add(-2 * staleUpload)
	os.Chtimes(stale, old, old)
	s, err := New(Config{Token: testToken, MediaDir: e.media, Logger: quiet()}, e.origin, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale upload kept: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("live upload removed: %v", err)
	}
}

// onlyReader hides a reader's type, so the client cannot tell its length
// and sends it chunked.
type onlyReader struct{ io.Reader }

// A chunked upload (no Content-Length) keeps the disk's reserve too: it is
// checked as the body streams, and the upload is refused with 507 and
// leaves nothing behind once the reserve would be eaten.
func TestChunkedUploadKeepsReserve(t *testing.T) {
	for _, tc := range []struct {
		name    string
		reserve int64
		status  int
	}{
		{"room", 1 << 20, 201},
		{"no room", 1 << 62, 507},
		// Room for the start of the body, not the rest: caught as it
		// streams.
		{"fills up while streaming", -12 << 20, 507},
	} {
		t.Run(tc.name, func(t *testing.T) {
			media := t.TempDir()
			if tc.reserve < 0 {
				var st syscall.Statfs_t
				if err := syscall.Statfs(media, &st); err != nil {
					t.Fatal(err)
				}
				tc.reserve += int64(st.Bavail) * int64(st.Bsize)
			}
			e := newEnvWith(t, envOptions{token: testToken, reserve: tc.reserve})
			code, b, _ := e.do("PUT", "/v1/files/chunked.mp4", onlyReader{bytes.NewReader(make([]byte, 40<<20))})
			if code != tc.status {
				t.Fatalf("status %d, want %d: %s", code, tc.status, b)
			}
			if code == 507 {
				left, _ := filepath.Glob(filepath.Join(e.media, "*"))
				if len(left) != 0 {
					t.Errorf("left behind: %v", left)
				}
			}
		})
	}
}
