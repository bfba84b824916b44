package edgeserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"path"
	"path/filepath"
	"strings"
	"testing"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/spp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// FuzzNameOf: whatever the URL path, a name comes out only if it is a
// published-style name that cannot leave a directory it is joined onto.
func FuzzNameOf(f *testing.F) {
	for _, s := range []string{"/a.mp4", "/films/a b.mp4", "/../etc/passwd", "/a/./b", "/a\\b", "//a", "/a/", "/%2e%2e/x", "/\x00", "/.hidden", "/a//b", "/é.mkv"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		name, err := nameOf(p)
		if err != nil {
			if !errors.Is(err, manifest.ErrBadName) {
				t.Fatalf("nameOf(%q): %v is not ErrBadName", p, err)
			}
			return
		}
		if "/"+name != p || manifest.CheckName(name) != nil {
			t.Fatalf("nameOf(%q) = %q", p, name)
		}
		if path.Clean("/"+name) != "/"+name || strings.ContainsAny(name, "\\\x00") {
			t.Fatalf("nameOf(%q) = %q: not a clean path", p, name)
		}
		if j := filepath.Join("/media", name); !strings.HasPrefix(j, "/media/") {
			t.Fatalf("nameOf(%q) = %q escapes: %s", p, name, j)
		}
	})
}

// FuzzServeRange: any combination of Range and conditional headers gets
// one of the answers RFC 9110 allows, and every byte of content sent is
// the file's byte at the offset the response says.
func FuzzServeRange(f *testing.F) {
	file := fuzzFile(f)
	edge, err := New(Config{
		Tracker:        fakeTracker{file},
		Nodes:          fakeNodes{file},
		Upstream:       "fake:1",
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		ReportInterval: -1,
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { edge.Close() })
	etag := file.m.ETag()
	lastMod := file.m.ModTime.UTC().Format(http.TimeFormat)
	for _, s := range [][7]string{
		{"GET", "", "", "", "", "", ""},
		{"HEAD", "bytes=0-0", "", "", "", "", ""},
		{"GET", "bytes=0-99,200-299,-10", "", "", "", "", ""},
		{"GET", "bytes=5-", etag, "", "", "", ""},
		{"GET", "bytes=5-9", `"stale"`, "", "", "", ""},
		{"GET", "", "", etag, "", "", ""},
		{"GET", "", "", "", lastMod, "", ""},
		{"GET", "", "", "", "", lastMod, `"other"`},
		{"GET", "bytes=99999999-", "", "", "", "", ""},
		{"GET", "bytes=abc", "", "", "", "", ""},
		{"GET", "BYTES=1-2", "", "", "", "", ""},
		{"GET", "items=0-5", "", "", "", "", ""},
		{"GET", "bytes=0-0,1-1,2-2,3-3,4-4,5-5,6-6,7-7,8-8,9-9,10-10,11-11,12-12,13-13,14-14,15-15,16-16,17-17,18-18,19-19,20-20,21-21,22-22,23-23,24-24,25-25,26-26,27-27,28-28,29-29,30-30,31-31,32-32", "", "", "", "", ""},
		{"POST", "bytes=0-1", "", "", "", "", ""},
		{"GET", "bytes=-0", "", "", "", "", ""},
		{"GET", "bytes=18446744073709551615-", "", "", "", "", ""},
		{"GET", "bytes=1-0", "", "", "", "", ""},
	} {
		f.Add(s[0], s[1], s[2], s[3], s[4], s[5], s[6])
	}
	f.Fuzz(func(t *testing.T, method, rng, ifRange, ifNoneMatch, ifModSince, ifUnmodSince, ifMatch string) {
		req := httptest.NewRequest("GET", "/"+file.m.Name, nil)
		req.Method = method
		for k, v := range map[string]string{"Range": rng, "If-Range": ifRange, "If-None-Match": ifNoneMatch,
			"If-Modified-Since": ifModSince, "If-Unmodified-Since": ifUnmodSince, "If-Match": ifMatch} {
			if v != "" {
				req.Header.Set(k, v)
			}
		}
		rec := httptest.NewRecorder()
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("handler panicked (aborted a response from healthy sources): %v", r)
				}
			}()
			edge.ServeHTTP(rec, req)
		}()
		checkResponse(t, method, rec, file)
	})
}

// checkResponse fails the test unless rec is a valid answer for file.
func checkResponse(t *testing.T, method string, rec *httptest.ResponseRecorder, file *fixtureFile) {
	t.Helper()
	body := rec.Body.Bytes()
	size := int64(len(file.data))
	switch {
	case method != "GET" && method != "HEAD":
		if rec.Code != http.StatusMethodNotAllowed {
			t.Fatalf("%s: status %d, want 405", method, rec.Code)
		}
		return
	case method == "HEAD" && len(body) > 64:
		// An error text is fine (the server drops a HEAD's body anyway);
		// content is not.
		t.Fatalf("HEAD with a %d-byte body", len(body))
	}
	switch rec.Code {
	case 200:
		if method == "GET" && !bytes.Equal(body, file.data) {
			t.Fatalf("200 with %d bytes that are not the file", len(body))
		}
	case 206:
		if method == "HEAD" {
			return
		}
		ct := rec.Header().Get("Content-Type")
		mt, params, err := mime.ParseMediaType(ct)
		if err == nil && mt == "multipart/byteranges" {
			mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
			parts := 0
			for ; ; parts++ {
				p, err := mr.NextPart()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("part %d: %v", parts, err)
				}
				data, _ := io.ReadAll(p)
				checkPart(t, p.Header.Get("Content-Range"), data, file.data)
			}
			if parts < 2 || parts > 32 {
				t.Fatalf("multipart answer with %d parts", parts)
			}
			return
		}
		checkPart(t, rec.Header().Get("Content-Range"), body, file.data)
	case 304, 412:
		if len(body) > 64 {
			t.Fatalf("%d with a %d-byte body", rec.Code, len(body))
		}
	case 416:
		if got, want := rec.Header().Get("Content-Range"), fmt.Sprintf("bytes */%d", size); got != want {
			t.Fatalf("416 with Content-Range %q, want %q", got, want)
		}
	default:
		t.Fatalf("status %d: body %.200q", rec.Code, body)
	}
}

// checkPart checks that data is the file's bytes at the range cr names.
func checkPart(t *testing.T, cr string, data, file []byte) {
	t.Helper()
	var first, last, total int64
	if _, err := fmt.Sscanf(cr, "bytes %d-%d/%d", &first, &last, &total); err != nil {
		t.Fatalf("Content-Range %q: %v", cr, err)
	}
	if total != int64(len(file)) || first < 0 || last < first || last >= total {
		t.Fatalf("Content-Range %q for a %d-byte file", cr, len(file))
	}
	if !bytes.Equal(data, file[first:last+1]) {
		t.Fatalf("part %q: %d bytes that are not the file's", cr, len(data))
	}
}

// fuzzFile is a file of a few chunks and a partial one, built without a
// *testing.T.
func fuzzFile(f *testing.F) *fixtureFile {
	data := make([]byte, 5*testChunk+1234)
	rng := rand.New(rand.NewPCG(3, 7))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	m, err := manifest.Build(context.Background(), bytes.NewReader(data), int64(len(data)), testChunk, 1)
	if err != nil {
		f.Fatal(err)
	}
	m.Name, m.ModTime, m.ContentType = "films/fuzz.mp4", modTime, "video/mp4"
	return &fixtureFile{data: data, m: m}
}

// fakeTracker knows one file; the edge under fuzzing is pinned to one
// upstream, so Locate is never asked.
type fakeTracker struct{ f *fixtureFile }

func (ft fakeTracker) GetFile(_ context.Context, in *trackerv1.GetFileRequest, _ ...grpc.CallOption) (*trackerv1.GetFileResponse, error) {
	if in.Name != ft.f.m.Name {
		return nil, status.Error(codes.NotFound, "not published")
	}
	return &trackerv1.GetFileResponse{File: ft.f.summary()}, nil
}

func (ft fakeTracker) ListFiles(context.Context, *trackerv1.ListFilesRequest, ...grpc.CallOption) (*trackerv1.ListFilesResponse, error) {
	return &trackerv1.ListFilesResponse{Files: []*trackerv1.File{ft.f.summary()}}, nil
}

func (fakeTracker) Locate(context.Context, *trackerv1.LocateRequest, ...grpc.CallOption) (*trackerv1.LocateResponse, error) {
	return nil, status.Error(codes.Unimplemented, "pinned")
}

func (fakeTracker) ReportRate(context.Context, *trackerv1.ReportRateRequest, ...grpc.CallOption) (*trackerv1.ReportRateResponse, error) {
	return &trackerv1.ReportRateResponse{}, nil
}

// fakeNodes is one SPP node in this process, serving the file without a
// network: fuzzing runs thousands of requests a second.
type fakeNodes struct{ f *fixtureFile }

func (n fakeNodes) Client(string) (sppv1.ChunkServiceClient, error) { return n, nil }

func (n fakeNodes) GetManifest(context.Context, *sppv1.GetManifestRequest, ...grpc.CallOption) (*sppv1.GetManifestResponse, error) {
	return &sppv1.GetManifestResponse{Manifest: n.f.m.ToProto()}, nil
}

func (n fakeNodes) Fetch(ctx context.Context, in *sppv1.FetchRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[sppv1.FetchResponse], error) {
	var pieces []*sppv1.FetchResponse
	for _, c := range in.Chunks {
		data := n.f.chunk(int(c))
		for off := 0; off < len(data); off += spp.PieceSize {
			pieces = append(pieces, &sppv1.FetchResponse{Chunk: c, Offset: uint32(off), Data: data[off:min(off+spp.PieceSize, len(data))]})
		}
	}
	return &fakeStream{ctx: ctx, pieces: pieces}, nil
}

type fakeStream struct {
	grpc.ClientStream // nil: only Recv, RecvMsg and Header are used
	ctx               context.Context
	pieces            []*sppv1.FetchResponse
}

// Header answers at once, as a live server's headers (spp.Accepted) do.
func (s *fakeStream) Header() (metadata.MD, error) { return nil, nil }

func (s *fakeStream) Recv() (*sppv1.FetchResponse, error) {
	if err := s.ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	if len(s.pieces) == 0 {
		return nil, io.EOF
	}
	p := s.pieces[0]
	s.pieces = s.pieces[1:]
	return p, nil
}

// RecvMsg is what spp's reader calls: the piece lands in m as p2pd's codec
// puts it, in the room m.Data lends when it is large enough.
func (s *fakeStream) RecvMsg(m any) error {
	p, err := s.Recv()
	if err != nil {
		return err
	}
	r := m.(*sppv1.FetchResponse)
	r.Chunk, r.Offset = p.Chunk, p.Offset
	r.Data = append(r.Data[:0], p.Data...)
	return nil
}
