package trackerserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/bitmap"
	"github.com/p2pd/p2pd/internal/etcdembed"
	"github.com/p2pd/p2pd/internal/nodeauth"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// testEndpoints are the client endpoints of the etcd shared by the tests;
// each test works under its own key prefix.
var testEndpoints []string

func TestMain(m *testing.M) { os.Exit(etcdembed.RunTests(m, &testEndpoints)) }

// newEtcdClient returns a client of the shared etcd.
func newEtcdClient(t *testing.T) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: testEndpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// testPrefix gives each test its own part of the shared etcd.
func testPrefix(t *testing.T) string {
	return "/test/" + strings.ReplaceAll(t.Name(), "/", "_") + "/"
}

// fixture is one test's etcd view and the trackers serving it.
type fixture struct {
	t      *testing.T
	etcd   *clientv3.Client
	prefix string
	addr   string // of the last tracker started
}

func newFixture(t *testing.T) *fixture {
	return &fixture{t: t, etcd: newEtcdClient(t), prefix: testPrefix(t)}
}

// tracker starts a tracker on the fixture's prefix with a real gRPC server
// on loopback, and returns a client of it.
func (f *fixture) tracker(cfg Config) (trackerv1.TrackerServiceClient, *Server) {
	t := f.t
	t.Helper()
	cfg.Prefix = f.prefix
	if cfg.OriginToken == "" {
		cfg.OriginToken = testOriginToken
	}
	if cfg.Logger == nil {
		cfg.Logger = discard()
	}
	srv := New(f.etcd, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { srv.Run(ctx) })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	trackerv1.RegisterTrackerServiceServer(gs, srv)
	wg.Go(func() { gs.Serve(l) })
	f.addr = l.Addr().String()
	// The tests' usual client is the origin: it may publish and register
	// an origin; f.dial gives other callers.
	c := f.dial(nodeauth.OriginTokenHeader, cfg.OriginToken)
	t.Cleanup(func() {
		gs.Stop()
		cancel()
		wg.Wait()
	})
	return c, srv
}

// testOriginToken is the origin credential of the tests' trackers.
const testOriginToken = "test-origin-token"

// dial returns a client of the fixture's last tracker that presents the
// given tokens (keys and values alternating).
func (f *fixture) dial(tokens ...string) trackerv1.TrackerServiceClient {
	f.t.Helper()
	conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), nodeauth.WithTokens(tokens...))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { conn.Close() })
	return trackerv1.NewTrackerServiceClient(conn)
}

// secretOf is the registration secret the tests give node id.
func secretOf(id string) string {
	s := sha256.Sum256([]byte("secret of " + id))
	return hex.EncodeToString(s[:])
}

// report sends samples as reporter: with its lease and secret when it is
// registered, so the report counts for everyone.
func (f *fixture) report(c trackerv1.TrackerServiceClient, reporter string, samples ...*trackerv1.RateSample) error {
	f.t.Helper()
	req := &trackerv1.ReportRateRequest{Reporter: reporter, Samples: samples}
	resp, err := f.etcd.Get(testCtx(f.t), f.prefix+nodesDir+reporter)
	if err != nil {
		f.t.Fatal(err)
	}
	if len(resp.Kvs) > 0 {
		req.LeaseId, req.Secret = resp.Kvs[0].Lease, secretOf(reporter)
	}
	_, err = c.ReportRate(testCtx(f.t), req)
	return err
}

// ctx returns a context bounded for one test step.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// root returns a deterministic file root for name.
func root(name string) []byte {
	r := sha256.Sum256([]byte(name))
	return r[:]
}

// have builds a Have of n chunks holding the given chunks.
func have(r []byte, n int, chunks ...int) *trackerv1.Have {
	return &trackerv1.Have{Root: r, ChunkCount: uint32(n), Bitmap: bitmap.Of(n, chunks...).Encode()}
}

// span returns [from, to).
func span(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// register registers a node and returns its lease.
func register(t *testing.T, c trackerv1.TrackerServiceClient, id string, role trackerv1.Role) int64 {
	t.Helper()
	resp, err := c.Register(testCtx(t), &trackerv1.RegisterRequest{Node: &trackerv1.Node{
		Id: id, Role: role, GrpcAddr: "127.0.0.1:1",
	}, Secret: secretOf(id)})
	if err != nil {
		t.Fatalf("register %s: %v", id, err)
	}
	return resp.LeaseId
}

// announce announces haves for a node.
func announce(t *testing.T, c trackerv1.TrackerServiceClient, id string, lease int64, haves ...*trackerv1.Have) {
	t.Helper()
	if _, err := c.Announce(testCtx(t), &trackerv1.AnnounceRequest{NodeId: id, LeaseId: lease, Haves: haves, Secret: secretOf(id)}); err != nil {
		t.Fatalf("announce %s: %v", id, err)
	}
}

// wantCode fails unless err has code want.
func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("got %v (%v), want code %v", got, err, want)
	}
}

// nodeIDs lists ListNodes' ids.
func nodeIDs(t *testing.T, c trackerv1.TrackerServiceClient) []string {
	t.Helper()
	resp, err := c.ListNodes(testCtx(t), &trackerv1.ListNodesRequest{})
	if err != nil {
		t.Fatalf("list nodes: %v", err)
	}
	var ids []string
	for _, n := range resp.Nodes {
		ids = append(ids, n.Id)
	}
	return ids
}

// sources renders a Locate answer as, per chunk, "id" for holders and
// "id?" for non-holders.
func sources(resp *trackerv1.LocateResponse) [][]string {
	out := make([][]string, len(resp.Chunks))
	for i, cs := range resp.Chunks {
		out[i] = []string{}
		for j, k := range cs.NodeIndex {
			id := resp.Nodes[k].Id
			if !cs.Held[j] {
				id += "?"
			}
			out[i] = append(out[i], id)
		}
	}
	return out
}

// discard is a logger for tests, whose failures speak for themselves.
func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
