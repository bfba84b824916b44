package cacheserver

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	"github.com/p2pd/p2pd/internal/chunkstore"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/service"
	"github.com/p2pd/p2pd/internal/spp"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// standalone is a cachenode without a tracker, serving what its store
// holds: enough to test request handling.
func standalone(t *testing.T) (*cache, []byte, *manifest.Manifest) {
	t.Helper()
	dir := t.TempDir()
	data, m := testFile(t, dir, "h.bin", 5*testChunkSize+100)
	storeDir := filepath.Join(dir, "store")
	store, err := chunkstore.Open(storeDir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.PutManifest(m); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := store.Put(m.Root, i, chunkOf(data, m, i), m.Digests[i]); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	srv, err := New(Config{NodeID: "solo", FetchMisses: true}, store, nil, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	addr := serve(t, func(s *grpc.Server) { sppv1.RegisterChunkServiceServer(s, srv) })
	pool := spp.NewPool(append(service.GRPCDialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	t.Cleanup(pool.Close)
	client, err := pool.Client(addr)
	if err != nil {
		t.Fatal(err)
	}
	return &cache{srv: srv, store: store, dir: storeDir, reg: reg, addr: addr, client: client}, data, m
}

func TestInvalidRequests(t *testing.T) {
	cn, _, m := standalone(t)
	unknown := sha256.Sum256([]byte("unknown"))
	tooMany := make([]uint32, spp.MaxChunksPerFetch+1)
	fetches := []struct {
		name string
		req  *sppv1.FetchRequest
		want codes.Code
	}{
		{"short root", &sppv1.FetchRequest{Root: []byte{1, 2, 3}, Chunks: []uint32{0}}, codes.InvalidArgument},
		{"no root", &sppv1.FetchRequest{Chunks: []uint32{0}}, codes.InvalidArgument},
		{"too many chunks", &sppv1.FetchRequest{Root: m.Root[:], Chunks: tooMany}, codes.InvalidArgument},
		{"chunk out of range", &sppv1.FetchRequest{Root: m.Root[:], Chunks: []uint32{0, uint32(m.ChunkCount())}}, codes.InvalidArgument},
		{"huge chunk index", &sppv1.FetchRequest{Root: m.Root[:], Chunks: []uint32{1 << 31}}, codes.InvalidArgument},
		{"unknown root", &sppv1.FetchRequest{Root: unknown[:], Chunks: []uint32{0}}, codes.NotFound},
		{"not held, no tracker", &sppv1.FetchRequest{Root: m.Root[:], Chunks: []uint32{4}}, codes.NotFound},
		{"nothing asked", &sppv1.FetchRequest{Root: m.Root[:]}, codes.OK},
	}
	for _, tc := range fetches {
		t.Run("Fetch/"+tc.name, func(t *testing.T) {
			stream, err := cn.client.Fetch(t.Context(), tc.req)
			if err == nil {
				for err == nil {
					_, err = stream.Recv()
				}
			}
			if errors.Is(err, io.EOF) {
				err = nil // the stream ended without an error status
			}
			if got := status.Code(err); got != tc.want {
				t.Fatalf("got %v (%v), want %v", got, err, tc.want)
			}
		})
	}
	manifests := []struct {
		name string
		req  *sppv1.GetManifestRequest
		want codes.Code
	}{
		{"neither root nor name", &sppv1.GetManifestRequest{}, codes.InvalidArgument},
		{"short root", &sppv1.GetManifestRequest{File: &sppv1.GetManifestRequest_Root{Root: []byte{1}}}, codes.InvalidArgument},
		{"unknown root", &sppv1.GetManifestRequest{File: &sppv1.GetManifestRequest_Root{Root: unknown[:]}}, codes.NotFound},
		{"bad name", &sppv1.GetManifestRequest{File: &sppv1.GetManifestRequest_Name{Name: "../etc/passwd"}}, codes.InvalidArgument},
		{"name, no tracker", &sppv1.GetManifestRequest{File: &sppv1.GetManifestRequest_Name{Name: "h.bin"}}, codes.NotFound},
		{"known root", &sppv1.GetManifestRequest{File: &sppv1.GetManifestRequest_Root{Root: m.Root[:]}}, codes.OK},
	}
	for _, tc := range manifests {
		t.Run("GetManifest/"+tc.name, func(t *testing.T) {
			_, err := cn.client.GetManifest(t.Context(), tc.req)
			if got := status.Code(err); got != tc.want {
				t.Fatalf("got %v (%v), want %v", got, err, tc.want)
			}
		})
	}
}

func TestDamagedStoredChunkIsNeverServed(t *testing.T) {
	cn, data, m := standalone(t)
	// Damage chunk 1 on disk behind the store's back.
	chunkFile := filepath.Join(cn.dir, "chunks", m.Root.String(), "1")
	b, err := os.ReadFile(chunkFile)
	if err != nil {
		t.Fatal(err)
	}
	b[0] ^= 1
	if err := os.WriteFile(chunkFile, b, 0o644); err != nil {
		t.Fatal(err)
	}

	got, err := cn.fetch(t.Context(), m, []uint32{0, 1, 2}, false)
	if status.Code(err) != codes.NotFound {
		t.Fatalf("damaged chunk: %v, want NotFound (no tracker to fetch it from)", err)
	}
	if !bytes.Equal(got, chunkOf(data, m, 0)) {
		t.Fatal("chunks before the damaged one not served")
	}
	if df := metricValue(t, cn.reg, "p2pd_cachenode_digest_failures_total"); df != 1 {
		t.Fatalf("digest failures = %v, want 1", df)
	}
	if cn.store.Has(m.Root, 1) {
		t.Fatal("damaged chunk kept")
	}
}

func TestConfigDefaults(t *testing.T) {
	var c Config
	c.Advertise = "127.0.0.1:7200"
	c.applyDefaults()
	if c.NodeID != "cachenode@127.0.0.1:7200" || c.ReadAhead < 1 || c.StallTimeout <= 0 || c.MaxSources < 1 || c.Logger == nil || c.FetchMisses {
		t.Fatalf("defaults: %+v", c)
	}
}
