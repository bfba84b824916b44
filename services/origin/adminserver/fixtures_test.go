package adminserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/bitmap"
	"github.com/p2pd/p2pd/internal/etcdembed"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/services/origin/originserver"
	"github.com/p2pd/p2pd/services/tracker/trackerclient"
	"github.com/p2pd/p2pd/services/tracker/trackertest"
	"github.com/prometheus/client_golang/prometheus"
)

const (
	testToken = "s3cret-admin-token"
	testChunk = manifest.MinChunkSize
)

// etcdEndpoints are those of the etcd shared by the tests; each test's
// tracker keeps its keys under its own prefix.
var etcdEndpoints []string

func TestMain(m *testing.M) { os.Exit(etcdembed.RunTests(m, &etcdEndpoints)) }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// env is a real tracker (over etcd and gRPC on loopback), a real origin
// publishing a temporary media directory, and the admin API in front of
// them on a real HTTP server.
type env struct {
	t       *testing.T
	media   string
	origin  *originserver.Server
	tracker *trackerclient.Client
	reg     *prometheus.Registry
	admin   *Server
	url     string
}

type envOptions struct {
	token     string
	maxUpload int64
	reserve   int64
}

func newEnv(t *testing.T) *env { return newEnvWith(t, envOptions{token: testToken}) }

func newEnvWith(t *testing.T, o envOptions) *env {
	t.Helper()
	e := &env{t: t, media: t.TempDir(), reg: prometheus.NewRegistry()}
	trackerAddr := trackertest.Start(t, etcdEndpoints, trackertest.Options{Logger: quiet()}).Addr
	tc, err := trackerclient.Dial(trackerAddr, trackertest.AsOrigin())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	e.tracker = tc

	e.origin, err = originserver.New(originserver.Config{
		MediaDir: e.media, ChunkSize: testChunk, NodeID: "origin-1", Advertise: "127.0.0.1:7100",
	}, e.reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := e.origin.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	member := tc.JoinWith(ctx, e.origin.Node(), e.origin.Haves, trackerclient.Config{Logger: quiet()})
	t.Cleanup(member.Close)
	e.origin.Attach(ctx, tc, member)

	e.admin, err = New(Config{
		Token: o.token, MediaDir: e.media, ChunkSize: testChunk, MaxUploadBytes: o.maxUpload, ReserveBytes: o.reserve,
		Metrics: e.reg, Logger: quiet(),
	}, e.origin, tc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.admin.Close() })
	srv := httptest.NewServer(e.admin.Handler())
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

// joinCachenode registers a cachenode with the tracker through the real
// tracker protocol and announces that it holds chunks of m.
func (e *env) joinCachenode(id string, m *manifest.Manifest, chunks ...int) *trackerclient.Member {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	mem := e.tracker.JoinWith(ctx, &trackerv1.Node{
		Id: id, Role: trackerv1.Role_ROLE_CACHENODE, GrpcAddr: "127.0.0.1:7200", CapacityBytes: 1 << 30,
	}, nil, trackerclient.Config{Logger: quiet()})
	e.t.Cleanup(mem.Close)
	b := bitmap.New(m.ChunkCount())
	for _, c := range chunks {
		b.Set(c)
	}
	mem.Update(&trackerv1.Have{Root: m.Root[:], ChunkCount: uint32(m.ChunkCount()), Bitmap: b.Encode()})
	mem.SetLoad(2, uint64(len(chunks)*testChunk))
	return mem
}

// do sends a request with the admin token unless hdr sets Authorization.
func (e *env) do(method, path string, body io.Reader, hdr ...string) (int, []byte, http.Header) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: body: %v", method, path, err)
	}
	return resp.StatusCode, b, resp.Header
}

// doJSON is do with a JSON answer decoded into out (when status is 2xx).
func (e *env) doJSON(method, path string, in, out any) (int, apiErr) {
	e.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	code, b, _ := e.do(method, path, body)
	if code/100 == 2 {
		if out != nil {
			if err := json.Unmarshal(b, out); err != nil {
				e.t.Fatalf("%s %s: %v in %s", method, path, err, b)
			}
		}
		return code, apiErr{}
	}
	return code, decodeErr(e.t, b)
}

// apiErr is the JSON error body.
type apiErr struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Status  int    `json:"status"`
}

func decodeErr(t *testing.T, b []byte) apiErr {
	t.Helper()
	var ae apiErr
	if err := json.Unmarshal(b, &ae); err != nil || ae.Code == "" || ae.Message == "" {
		t.Fatalf("error body is not the API's JSON error: %q", b)
	}
	return ae
}

// Shapes of the answers, as a REST client sees them.
type (
	jsonFile struct {
		Name          string `json:"name"`
		Size          string `json:"size"`
		ChunkSize     int    `json:"chunkSize"`
		ChunkCount    int    `json:"chunkCount"`
		Root          string `json:"root"`
		Etag          string `json:"etag"`
		ContentType   string `json:"contentType"`
		PublishedTime string `json:"publishedTime"`
		CachedOnNodes int    `json:"cachedOnNodes"`
		CachedChunks  string `json:"cachedChunks"`
	}
	jsonHolder struct {
		NodeID   string `json:"nodeId"`
		Role     string `json:"role"`
		Chunks   int    `json:"chunks"`
		ChunkMap []byte `json:"chunkMap"`
	}
	jsonFileDetail struct {
		File    jsonFile     `json:"file"`
		Holders []jsonHolder `json:"holders"`
	}
	jsonNode struct {
		ID       string  `json:"id"`
		Role     string  `json:"role"`
		GrpcAddr string  `json:"grpcAddr"`
		UpSince  string  `json:"upSince"`
		Load     int     `json:"load"`
		Files    int     `json:"files"`
		Chunks   string  `json:"chunks"`
		Rate     float64 `json:"rateBytesPerSecond"`
		OpsAddr  string  `json:"opsAddr"`
	}
)

// writeMedia writes size random bytes at name under the media directory.
func (e *env) writeMedia(name string, size int) []byte {
	e.t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	p := filepath.Join(e.media, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		e.t.Fatal(err)
	}
	return data
}

// leftovers lists upload files left in the media directory.
func (e *env) leftovers() []string {
	e.t.Helper()
	var out []string
	filepath.WalkDir(e.media, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), uploadPrefix) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// rootOf is the root digest p2pd computes for data.
func rootOf(t *testing.T, data []byte) string {
	t.Helper()
	m, err := manifest.Build(context.Background(), bytes.NewReader(data), int64(len(data)), testChunk, 1)
	if err != nil {
		t.Fatal(err)
	}
	return m.Root.String()
}

func reprDigest(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha-256=:" + base64.StdEncoding.EncodeToString(sum[:]) + ":"
}
