package originserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/spp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

const testChunk = manifest.MinChunkSize

// startOrigin serves an origin over real gRPC on loopback.
func startOrigin(t *testing.T, dir string) (*Server, sppv1.ChunkServiceClient) {
	t.Helper()
	o, err := New(Config{MediaDir: dir, ChunkSize: testChunk, Advertise: "test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	sppv1.RegisterChunkServiceServer(srv, o)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	pool := spp.NewPool(grpc.WithTransportCredentials(insecure.NewCredentials()))
	t.Cleanup(pool.Close)
	c, err := pool.Client(l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return o, c
}

func writeFile(t *testing.T, dir, name string, size int) []byte {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return data
}

func fetchAll(t *testing.T, c sppv1.ChunkServiceClient, m *manifest.Manifest) ([]byte, error) {
	t.Helper()
	req := &sppv1.FetchRequest{Root: m.Root[:]}
	for i := range m.ChunkCount() {
		req.Chunks = append(req.Chunks, uint32(i))
	}
	r, err := spp.Open(context.Background(), c, m, req, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []byte
	for {
		_, data, err := r.Next(nil)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, data...)
	}
}

func TestScanPublishesAndServes(t *testing.T) {
	dir := t.TempDir()
	big := writeFile(t, dir, "films/big.mp4", 5*testChunk+123)
	writeFile(t, dir, "empty.ts", 0)
	writeFile(t, dir, "one.webm", 1)
	writeFile(t, dir, ".hidden.mp4", 10)
	writeFile(t, dir, ".upload/partial.mp4", 10)
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "link.mp4")); err != nil {
		t.Fatal(err)
	}
	o, c := startOrigin(t, dir)

	got := map[string]bool{}
	for _, m := range o.Files() {
		got[m.Name] = true
	}
	for _, want := range []string{"films/big.mp4", "empty.ts", "one.webm"} {
		if !got[want] {
			t.Errorf("%s not published", want)
		}
	}
	for _, not := range []string{".hidden.mp4", ".upload/partial.mp4", "link.mp4"} {
		if got[not] {
			t.Errorf("%s published", not)
		}
	}

	resp, err := c.GetManifest(context.Background(), &sppv1.GetManifestRequest{File: &sppv1.GetManifestRequest_Name{Name: "films/big.mp4"}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.FromProto(resp.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	if m.ContentType != "video/mp4" || m.ChunkCount() != 6 {
		t.Fatalf("manifest: type %q, %d chunks", m.ContentType, m.ChunkCount())
	}
	data, err := fetchAll(t, c, m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, big) {
		t.Fatal("fetched bytes differ from the file")
	}
	if got := testutil.ToFloat64(o.metrics.egress); got != float64(len(big)) {
		t.Fatalf("egress metric %v, want %d", got, len(big))
	}
}

func TestFetchRejectsBadRequests(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a.mp4", 2*testChunk)
	o, c := startOrigin(t, dir)
	m, _ := o.Lookup("a.mp4")
	unknown := manifest.Digest{1}
	many := make([]uint32, spp.MaxChunksPerFetch+1)
	for _, tc := range []struct {
		name string
		req  *sppv1.FetchRequest
		code codes.Code
	}{
		{"short root", &sppv1.FetchRequest{Root: []byte{1, 2}, Chunks: []uint32{0}}, codes.InvalidArgument},
		{"unknown root", &sppv1.FetchRequest{Root: unknown[:], Chunks: []uint32{0}}, codes.NotFound},
		{"chunk out of range", &sppv1.FetchRequest{Root: m.Root[:], Chunks: []uint32{2}}, codes.InvalidArgument},
		{"too many chunks", &sppv1.FetchRequest{Root: m.Root[:], Chunks: many}, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream, err := c.Fetch(context.Background(), tc.req)
			if err == nil {
				_, err = stream.Recv()
			}
			if status.Code(err) != tc.code {
				t.Fatalf("got %v, want %v", err, tc.code)
			}
		})
	}
}

// A file rewritten on disk after publishing must never be served under
// its old root: the origin refuses the chunk and publishes a new version.
func TestChangedFileIsNotServedUnderOldRoot(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "v.mp4", 3*testChunk)
	o, c := startOrigin(t, dir)
	old, _ := o.Lookup("v.mp4")
	// Rewrite in place, same size: only the digests can tell.
	fresh := writeFile(t, dir, "v.mp4", 3*testChunk)
	_, err := fetchAll(t, c, old)
	if status.Code(err) != codes.DataLoss {
		t.Fatalf("fetch of old version: %v, want DataLoss", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, ok := o.Lookup("v.mp4")
		if ok && m.Root != old.Root {
			data, err := fetchAll(t, c, m)
			if err != nil || !bytes.Equal(data, fresh) {
				t.Fatalf("new version: err %v, equal %v", err, bytes.Equal(data, fresh))
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("changed file was not re-published")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAttachRecordsAgainUntilTheTrackerTakes: a tracker that refuses the
// first records (not up yet) still gets every file, without a rescan.
func TestAttachRecordsAgainUntilTheTrackerTakes(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a.mp4", 10)
	writeFile(t, dir, "b.mp4", 10)
	o, _ := startOrigin(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rt := &flakyTracker{fails: 3, got: make(chan string, 2)}
	o.Attach(ctx, rt, nil)
	got := map[string]bool{}
	for len(got) < 2 {
		select {
		case name := <-rt.got:
			got[name] = true
		case <-time.After(2 * time.Minute):
			t.Fatalf("recorded %v after the tracker came up, want a.mp4 and b.mp4", got)
		}
	}
}

// flakyTracker refuses the first fails records, then takes each.
type flakyTracker struct {
	recordingTracker
	mu    sync.Mutex
	fails int
	got   chan string
}

func (f *flakyTracker) PublishFile(_ context.Context, req *trackerv1.PublishFileRequest, _ ...grpc.CallOption) (*trackerv1.PublishFileResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fails > 0 {
		f.fails--
		return nil, status.Error(codes.Unavailable, "no tracker yet")
	}
	f.got <- req.File.Name
	return &trackerv1.PublishFileResponse{}, nil
}

type recordingTracker struct {
	published   []*trackerv1.File
	unpublished []string
}

func (r *recordingTracker) PublishFile(_ context.Context, req *trackerv1.PublishFileRequest, _ ...grpc.CallOption) (*trackerv1.PublishFileResponse, error) {
	r.published = append(r.published, req.File)
	return &trackerv1.PublishFileResponse{}, nil
}

func (r *recordingTracker) UnpublishFile(_ context.Context, req *trackerv1.UnpublishFileRequest, _ ...grpc.CallOption) (*trackerv1.UnpublishFileResponse, error) {
	r.unpublished = append(r.unpublished, req.Name)
	return &trackerv1.UnpublishFileResponse{}, nil
}

func (r *recordingTracker) ListFiles(context.Context, *trackerv1.ListFilesRequest, ...grpc.CallOption) (*trackerv1.ListFilesResponse, error) {
	return &trackerv1.ListFilesResponse{Files: r.published}, nil
}

func TestPublishValidatesNames(t *testing.T) {
	dir := t.TempDir()
	o, _ := startOrigin(t, dir)
	for _, name := range []string{"../etc/passwd", "/abs.mp4", "a/../../b", ".secret", "missing.mp4"} {
		if _, err := o.Publish(context.Background(), name); err == nil {
			t.Errorf("Publish(%q): no error", name)
		}
	}
	if _, err := o.Publish(context.Background(), "../x"); !errors.Is(err, manifest.ErrBadName) {
		t.Errorf("traversal: %v, want ErrBadName", err)
	}
}

func TestRescanUnpublishesRemovedFiles(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "gone.mp4", 10)
	o, _ := startOrigin(t, dir)
	rt := &recordingTracker{}
	o.Attach(context.Background(), rt, nil)
	if len(rt.published) != 1 {
		t.Fatalf("attach recorded %d files, want 1", len(rt.published))
	}
	os.Remove(filepath.Join(dir, "gone.mp4"))
	if err := o.Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := o.Lookup("gone.mp4"); ok || len(rt.unpublished) != 1 {
		t.Fatalf("removed file still published (unpublished %v)", rt.unpublished)
	}
}
