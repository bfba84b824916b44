package edgeserver

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/etcdembed"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/spp/spptest"
	"github.com/p2pd/p2pd/internal/testclock"
	"github.com/p2pd/p2pd/services/tracker/trackertest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
)

// testChunk is the smallest chunk size a manifest allows: files of a few
// chunks stay small.
const testChunk = manifest.MinChunkSize

// modTime is every fixture's modification time, whole seconds as HTTP
// dates carry.
var modTime = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fixtureFile is a published file held in memory.
type fixtureFile struct {
	data []byte
	m    *manifest.Manifest
}

func newFixtureFile(t *testing.T, name string, size int, seed uint64) *fixtureFile {
	t.Helper()
	data := make([]byte, size)
	rng := rand.New(rand.NewPCG(seed, 7))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	m, err := manifest.Build(context.Background(), bytes.NewReader(data), int64(size), testChunk, 1)
	if err != nil {
		t.Fatal(err)
	}
	m.Name, m.ModTime, m.ContentType = name, modTime, manifest.ContentType(name)
	return &fixtureFile{data: data, m: m}
}

func (f *fixtureFile) chunk(i int) []byte {
	off := f.m.ChunkOffset(i)
	return f.data[off : off+int64(f.m.ChunkLen(i))]
}

func (f *fixtureFile) summary() *trackerv1.File {
	return &trackerv1.File{
		Name:            f.m.Name,
		Size:            uint64(f.m.Size),
		ChunkSize:       uint32(f.m.ChunkSize),
		ChunkCount:      uint32(f.m.ChunkCount()),
		Root:            f.m.Root[:],
		ModTimeUnixNano: f.m.ModTime.UnixNano(),
		ContentType:     f.m.ContentType,
	}
}

// sppNode is a real SPP gRPC server on 127.0.0.1 serving fixture files:
// the cachenode the edge talks to, with faults on demand.
type sppNode struct {
	*spptest.Node
	id string // as registered with the tracker
}

func startNode(t *testing.T, id string, files []*fixtureFile) *sppNode {
	t.Helper()
	var fs []*spptest.File
	for _, f := range files {
		fs = append(fs, &spptest.File{M: f.m, Data: f.data})
	}
	return &sppNode{Node: spptest.Start(t, spptest.Honest, fs...), id: id}
}

// stats returns the Fetch calls the node got and the chunks they asked for.
func (n *sppNode) stats() (fetches, requested int) {
	return int(n.FetchCalls()), int(n.RequestedChunks())
}

// countingTracker is the real tracker client, counting Locate calls.
type countingTracker struct {
	Tracker
	locates atomic.Int64
}

func (c *countingTracker) Locate(ctx context.Context, in *trackerv1.LocateRequest, opts ...grpc.CallOption) (*trackerv1.LocateResponse, error) {
	c.locates.Add(1)
	return c.Tracker.Locate(ctx, in, opts...)
}

// testEtcd holds the endpoints of the etcd shared by this package's tests;
// each env keeps its tracker state under a prefix of its own.
var testEtcd []string

func TestMain(m *testing.M) { os.Exit(etcdembed.RunTests(m, &testEtcd)) }

// env is an edge wired to a real tracker and SPP nodes over real gRPC,
// behind a real HTTP server.
type env struct {
	tc      trackerv1.TrackerServiceClient // the test's own client
	tracker *trackertest.Tracker
	counted *countingTracker // the edge's client
	nodes   []*sppNode
	edge    *Server
	http    *httptest.Server
	clock   *testclock.Clock
	reg     *prometheus.Registry
	files   map[string]*fixtureFile
}

// newEnv starts nodes SPP nodes holding every file, registers them with a
// fresh tracker, publishes the files and starts the edge. tune adjusts the
// edge's config.
func newEnv(t *testing.T, nodes int, files []*fixtureFile, tune func(*Config)) *env {
	t.Helper()
	e := &env{
		clock: testclock.New(time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)),
		reg:   prometheus.NewRegistry(),
		files: map[string]*fixtureFile{},
	}
	e.tracker = trackertest.Start(t, testEtcd, trackertest.Options{
		LeaseTTL:    time.Minute, // no heartbeats in these tests
		PeerSharing: true,
	})
	e.tc = e.tracker.Client
	ctx := t.Context()
	for i := range nodes {
		n := startNode(t, fmt.Sprintf("cache-%d", i), files)
		e.nodes = append(e.nodes, n)
		_, err := e.tc.Register(ctx, &trackerv1.RegisterRequest{Node: &trackerv1.Node{Id: n.id, Role: trackerv1.Role_ROLE_CACHENODE, GrpcAddr: n.Addr},
			// The same node in every env of a test: it may register again.
			Secret: "secret of the test's " + n.id + strings.Repeat(".", 32)})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		e.publish(t, f)
	}

	e.counted = &countingTracker{Tracker: e.tc}
	cfg := Config{
		Tracker:        e.counted,
		NodeID:         "edge-test",
		Registry:       e.reg,
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:            e.clock.Now,
		ReportInterval: -1, // the tracker's own ranking must not move under the tests
		// Most tests watch the nodes being asked; hot_test.go turns the
		// memory cache on.
		MemoryCacheBytes: -1,
	}
	if tune != nil {
		tune(&cfg)
	}
	var err error
	e.edge, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.http = httptest.NewServer(e.edge)
	t.Cleanup(func() {
		e.http.Close()
		e.edge.Close()
		if n := e.edge.bufs.InUse(); n != 0 {
			t.Errorf("%d chunk buffers still in use after the server closed", n)
		}
	})
	return e
}

func (e *env) publish(t *testing.T, f *fixtureFile) {
	t.Helper()
	if _, err := e.tc.PublishFile(t.Context(), &trackerv1.PublishFileRequest{File: f.summary()}); err != nil {
		t.Fatal(err)
	}
	e.files[f.m.Name] = f
}

func (e *env) unpublish(t *testing.T, name string) {
	t.Helper()
	if _, err := e.tc.UnpublishFile(t.Context(), &trackerv1.UnpublishFileRequest{Name: name}); err != nil {
		t.Fatal(err)
	}
}

// ranking returns, per chunk of f, the nodes in the tracker's order for
// an edge.
func (e *env) ranking(t *testing.T, f *fixtureFile) [][]*sppNode {
	t.Helper()
	resp, err := e.tc.Locate(t.Context(), &trackerv1.LocateRequest{
		Root:              f.m.Root[:],
		ChunkCount:        uint32(f.m.ChunkCount()),
		Roles:             []trackerv1.Role{trackerv1.Role_ROLE_CACHENODE},
		IncludeNonHolders: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]*sppNode{}
	for _, n := range e.nodes {
		byID[n.id] = n
	}
	out := make([][]*sppNode, len(resp.Chunks))
	for i, c := range resp.Chunks {
		for _, ni := range c.NodeIndex {
			out[i] = append(out[i], byID[resp.Nodes[ni].Id])
		}
	}
	return out
}

// do sends one request to the edge; hdr is alternating names and values.
func (e *env) do(t *testing.T, method, path string, hdr ...string) (*http.Response, []byte, error) {
	t.Helper()
	req, err := http.NewRequest(method, e.http.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.http.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}
