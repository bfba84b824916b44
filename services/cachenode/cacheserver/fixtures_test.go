package cacheserver

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/chunkstore"
	"github.com/p2pd/p2pd/internal/etcdembed"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/service"
	"github.com/p2pd/p2pd/internal/spp"
	"github.com/p2pd/p2pd/internal/spp/spptest"
	"github.com/p2pd/p2pd/services/origin/origintest"
	"github.com/p2pd/p2pd/services/tracker/trackerclient"
	"github.com/p2pd/p2pd/services/tracker/trackertest"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// testChunkSize keeps test files small while still many chunks long.
const testChunkSize = manifest.MinChunkSize

// cluster is a real tracker (over an embedded etcd) on loopback, and a
// client to it.
type cluster struct {
	t       *testing.T
	tracker *trackerclient.Client
	addr    string
	pool    *spp.Pool
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e, err := etcdembed.Start(ctx, t.TempDir(), "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	addr := trackertest.Start(t, e.Endpoints(), trackertest.Options{PeerSharing: true}).Addr
	// The cluster's client speaks for origins too: it presents the origin
	// credential.
	tc, err := trackerclient.Dial(addr, trackertest.AsOrigin())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	pool := spp.NewPool(append(service.GRPCDialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	t.Cleanup(pool.Close)
	return &cluster{t: t, tracker: tc, addr: addr, pool: pool}
}

// serve runs a gRPC server on a loopback port until the test ends and
// returns its address.
func serve(t *testing.T, register func(*grpc.Server)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(service.GRPCServerOptions()...)
	register(s)
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return l.Addr().String()
}

// join registers a node with the tracker until the test ends and waits
// until Locate shows its holdings of m (if any).
func (c *cluster) join(node *trackerv1.Node, haves trackerclient.HaveFunc) *trackerclient.Member {
	c.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	mem := c.tracker.Join(ctx, node, haves)
	c.t.Cleanup(func() { cancel(); mem.Close() })
	return mem
}

// waitHolders polls Locate until the holders of chunk idx of root, asked
// as requester, include want.
func (c *cluster) waitHolders(root manifest.Digest, idx int, requester string, want ...string) {
	c.t.Helper()
	trackertest.Eventually(c.t, fmt.Sprintf("holders %v of chunk %d", want, idx), func() bool {
		got := c.holders(root, idx, requester)
		for _, w := range want {
			found := false
			for _, g := range got {
				found = found || g == w
			}
			if !found {
				return false
			}
		}
		return true
	})
}

// holders returns the ranked holders of chunk idx of root for requester.
func (c *cluster) holders(root manifest.Digest, idx int, requester string) []string {
	resp, err := c.tracker.Locate(context.Background(), &trackerv1.LocateRequest{
		Root: root[:], FirstChunk: uint32(idx), ChunkCount: 1, Requester: requester, MaxSources: 16,
	})
	if err != nil || len(resp.Chunks) != 1 {
		return nil
	}
	var ids []string
	for k, ni := range resp.Chunks[0].NodeIndex {
		if resp.Chunks[0].Held[k] {
			ids = append(ids, resp.Nodes[ni].Id)
		}
	}
	return ids
}

// testFile writes size random bytes to dir/name and returns them with
// their manifest.
func testFile(t *testing.T, dir, name string, size int) ([]byte, *manifest.Manifest) {
	t.Helper()
	data := make([]byte, size)
	r := rand.NewChaCha8([32]byte{byte(size), byte(size >> 8), name[0]})
	r.Read(data)
	path := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := manifest.BuildFile(context.Background(), path, testChunkSize)
	if err != nil {
		t.Fatal(err)
	}
	m.Name = name
	m.ContentType = manifest.ContentType(name)
	return data, m
}

// origin is the real origin service publishing a media directory.
type origin struct {
	*origintest.Origin
	reg  *prometheus.Registry
	stop func()
}

// startOrigin publishes mediaDir from a real origin that joins the tracker.
func (c *cluster) startOrigin(mediaDir string) *origin {
	c.t.Helper()
	o := origintest.Start(c.t, origintest.Config{MediaDir: mediaDir, ChunkSize: testChunkSize, NodeID: "origin"})
	mem := c.join(o.Server.Node(), o.Server.Haves)
	o.Server.Attach(context.Background(), c.tracker, mem)
	return &origin{Origin: o, reg: o.Registry, stop: o.Stop}
}

// startSource serves the file of data and m from an SPP node misbehaving
// as faults say, joined to the tracker as id holding every chunk.
func (c *cluster) startSource(id string, role trackerv1.Role, data []byte, m *manifest.Manifest, faults spptest.Faults) *spptest.Node {
	c.t.Helper()
	n := spptest.Start(c.t, faults, &spptest.File{M: m, Data: data})
	c.join(&trackerv1.Node{Id: id, Role: role, GrpcAddr: n.Addr}, fullHaves(m))
	return n
}

// cache is a cachenode under test.
type cache struct {
	srv    *Server
	store  *chunkstore.Store
	dir    string // the store's
	reg    *prometheus.Registry
	addr   string
	client sppv1.ChunkServiceClient
	stop   func() // stops serving and leaves the tracker
}

// startCache starts a cachenode over the store in dir; cfg's NodeID and
// Advertise are filled in.
func (c *cluster) startCache(id, dir string, cfg Config) *cache {
	c.t.Helper()
	return c.startCacheLimit(id, dir, 1<<30, cfg)
}

// startCacheLimit is startCache with a store of maxBytes.
func (c *cluster) startCacheLimit(id, dir string, maxBytes int64, cfg Config) *cache {
	c.t.Helper()
	store, err := chunkstore.Open(dir, maxBytes)
	if err != nil {
		c.t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cfg.NodeID, cfg.Advertise = id, l.Addr().String()
	srv, err := New(cfg, store, c.tracker, c.pool, reg)
	if err != nil {
		c.t.Fatal(err)
	}
	gs := grpc.NewServer(service.GRPCServerOptions()...)
	sppv1.RegisterChunkServiceServer(gs, srv)
	go gs.Serve(l)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { srv.Run(ctx); close(ran) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-ran
			gs.Stop()
		}
	}
	c.t.Cleanup(stop)
	client, err := c.pool.Client(l.Addr().String())
	if err != nil {
		c.t.Fatal(err)
	}
	return &cache{srv: srv, store: store, dir: dir, reg: reg, addr: l.Addr().String(), client: client, stop: stop}
}

// fetch reads chunks of m from the cachenode through a verifying reader
// and returns their concatenated bytes.
func (cn *cache) fetch(ctx context.Context, m *manifest.Manifest, idxs []uint32, localOnly bool) ([]byte, error) {
	return spptest.ReadAll(ctx, cn.client, m, &sppv1.FetchRequest{Root: m.Root[:], Chunks: idxs, LocalOnly: localOnly, Requester: "test"}, 10*time.Second)
}

func allChunks(m *manifest.Manifest) []uint32 {
	idxs := make([]uint32, m.ChunkCount())
	for i := range idxs {
		idxs[i] = uint32(i)
	}
	return idxs
}

// metricValue returns the value of a counter or gauge in reg, labels given as
// name, value pairs; 0 if absent.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

// waitMetric polls until a metric reaches want: counters of the serving
// side move just after the bytes leave, so the client may see the bytes
// first.
func waitMetric(t *testing.T, reg *prometheus.Registry, want float64, name string, labels ...string) {
	t.Helper()
	var got float64
	deadline := time.Now().Add(20 * time.Second)
	for {
		if got = metricValue(t, reg, name, labels...); got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v, want %v", name, labels, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
