package trackerclient

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/bitmap"
	"github.com/p2pd/p2pd/internal/etcdembed"
	"github.com/p2pd/p2pd/services/tracker/trackerserver"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// testEndpoints are the client endpoints of the etcd shared by the tests;
// each test works under its own key prefix.
var testEndpoints []string

func TestMain(m *testing.M) { os.Exit(etcdembed.RunTests(m, &testEndpoints)) }

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newEtcdClient(t *testing.T) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: testEndpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func testPrefix(t *testing.T) string {
	return "/test/" + strings.ReplaceAll(t.Name(), "/", "_") + "/"
}

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

// testTracker is a real tracker on loopback that counts the calls it gets.
type testTracker struct {
	addr  string
	calls sync.Map // full method -> *atomic.Int64
	stop  func()
}

func (tt *testTracker) count(method string) int64 {
	v, ok := tt.calls.Load("/tracker.v1.TrackerService/" + method)
	if !ok {
		return 0
	}
	return v.(*atomic.Int64).Load()
}

// startTracker serves a tracker on addr ("127.0.0.1:0" for any port) over
// the test's prefix of the shared etcd.
func startTracker(t *testing.T, addr string, cfg trackerserver.Config) *testTracker {
	t.Helper()
	cfg.Prefix = testPrefix(t)
	cfg.Logger = discard()
	srv := trackerserver.New(newEtcdClient(t), cfg)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	tt := &testTracker{addr: l.Addr().String()}
	gs := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		v, _ := tt.calls.LoadOrStore(info.FullMethod, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
		return h(ctx, req)
	}))
	trackerv1.RegisterTrackerServiceServer(gs, srv)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { srv.Run(ctx) })
	wg.Go(func() { gs.Serve(l) })
	var once sync.Once
	tt.stop = func() {
		once.Do(func() {
			gs.Stop()
			cancel()
			wg.Wait()
		})
	}
	t.Cleanup(tt.stop)
	return tt
}

func dial(t *testing.T, addrs string) *Client {
	t.Helper()
	c, err := Dial(addrs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func root(name string) []byte {
	r := sha256.Sum256([]byte(name))
	return r[:]
}

func have(r []byte, n int, chunks ...int) *trackerv1.Have {
	b := bitmap.New(n)
	for _, c := range chunks {
		b.Set(c)
	}
	return &trackerv1.Have{Root: r, ChunkCount: uint32(n), Bitmap: b.Encode()}
}

// holdings returns chunks held per root (hex) for node id.
func holdings(t *testing.T, c *Client, id string) map[string]uint32 {
	t.Helper()
	resp, err := c.ListNodes(testCtx(t), &trackerv1.ListNodesRequest{})
	if err != nil {
		t.Fatalf("list nodes: %v", err)
	}
	return resp.Holdings[id].GetChunksByRoot()
}

func nodeIDs(t *testing.T, c *Client) []string {
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

func hexRoot(r []byte) string { return fmt.Sprintf("%x", r) }

func cacheNode(id string) *trackerv1.Node {
	return &trackerv1.Node{Id: id, Role: trackerv1.Role_ROLE_CACHENODE, GrpcAddr: "127.0.0.1:1"}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in       string
		target   string
		resolver bool
		err      string
	}{
		{in: "127.0.0.1:7000", target: "dns:///127.0.0.1:7000"},
		{in: " tracker:7000 ", target: "dns:///tracker:7000"},
		{in: "dns:///tracker:7000", target: "dns:///tracker:7000"},
		{in: "a:1,b:2, c:3", target: listScheme + ":///trackers", resolver: true},
		{in: "", err: "no address"},
		{in: "tracker", err: "missing port"},
		{in: "a:1,,b:2", err: "missing port"},
		{in: "dns:///a:1,b:2", err: "either"},
	}
	for _, tt := range tests {
		target, opts, err := parseTarget(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseTarget(%q) error = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || target != tt.target || (len(opts) > 0) != tt.resolver {
			t.Errorf("parseTarget(%q) = %q, %d opts, %v; want %q, resolver %v", tt.in, target, len(opts), err, tt.target, tt.resolver)
		}
	}
}

func TestSplit(t *testing.T) {
	m := &Member{cfg: Config{MaxHavesPerAnnounce: 2, MaxAnnounceBytes: 10}}
	h := func(name string, size int) *trackerv1.Have {
		return &trackerv1.Have{Root: []byte(name), Bitmap: make([]byte, size)}
	}
	render := func(batches [][]*trackerv1.Have) string {
		var out []string
		for _, b := range batches {
			var names []string
			for _, x := range b {
				names = append(names, fmt.Sprintf("%s%d", x.Root, len(x.Bitmap)))
			}
			out = append(out, strings.Join(names, "+"))
		}
		return strings.Join(out, " ")
	}
	tests := []struct {
		name string
		in   []*trackerv1.Have
		want string
	}{
		{"empty", nil, ""},
		{"by count", []*trackerv1.Have{h("a", 1), h("b", 1), h("c", 1)}, "a1+b1 c1"},
		{"by bytes", []*trackerv1.Have{h("a", 6), h("b", 6), h("c", 3)}, "a6 b6+c3"},
		{"oversized alone", []*trackerv1.Have{h("a", 20), h("b", 1)}, "a20 b1"},
		{"duplicate root keeps last", []*trackerv1.Have{h("a", 1), h("b", 1), h("a", 2)}, "b1+a2"},
	}
	for _, tt := range tests {
		m.cfg.applyDefaults()
		if got := render(m.split(tt.in)); got != tt.want {
			t.Errorf("%s: split = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestJoinAndClose(t *testing.T) {
	tr := startTracker(t, "127.0.0.1:0", trackerserver.Config{})
	c := dial(t, tr.addr)
	a, b := root("a"), root("b")
	m := c.Join(testCtx(t), cacheNode("cache-1"), func() []*trackerv1.Have {
		return []*trackerv1.Have{have(a, 4, 0, 1), have(b, 2, 1)}
	})
	eventually(t, "registration", m.Registered)
	eventually(t, "initial holdings", func() bool {
		h := holdings(t, c, "cache-1")
		return h[hexRoot(a)] == 2 && h[hexRoot(b)] == 1
	})
	m.SetLoad(9, 12345)
	m.Close()
	if m.Registered() {
		t.Error("registered after Close")
	}
	// Close revoked the lease through the tracker, whose view shows it.
	if got := nodeIDs(t, c); len(got) != 0 {
		t.Errorf("nodes after Close = %v", got)
	}
	if got := holdings(t, c, "cache-1"); len(got) != 0 {
		t.Errorf("holdings after Close = %v", got)
	}
	m.Close() // idempotent
}

// Many updates in a burst reach the tracker in few Announce calls, the
// latest bitmap per root winning.
func TestUpdateBatching(t *testing.T) {
	tr := startTracker(t, "127.0.0.1:0", trackerserver.Config{})
	c := dial(t, tr.addr)
	m := c.Join(testCtx(t), cacheNode("cache-1"), nil)
	defer m.Close()
	eventually(t, "registration", m.Registered)
	const roots, chunks = 5, 64
	// Encode first: the burst itself must be quick, as a node's is.
	var burst []*trackerv1.Have
	for i := range chunks {
		for r := range roots {
			burst = append(burst, have(root(fmt.Sprint(r)), chunks, span(0, i+1)...))
		}
	}
	before := tr.count("Announce")
	for _, h := range burst {
		m.Update(h)
	}
	eventually(t, "all updates to arrive", func() bool {
		h := holdings(t, c, "cache-1")
		for r := range roots {
			if h[hexRoot(root(fmt.Sprint(r)))] != chunks {
				return false
			}
		}
		return true
	})
	// The burst takes well under one flush delay; allow it to straddle a
	// flush or two.
	if n := tr.count("Announce") - before; n < 1 || n > 3 {
		t.Errorf("%d updates took %d Announce calls, want 1 to 3", roots*chunks, n)
	}
}

// Holdings over the per-call limit are split into several calls.
func TestUpdateSplits(t *testing.T) {
	tr := startTracker(t, "127.0.0.1:0", trackerserver.Config{})
	c := dial(t, tr.addr)
	m := c.JoinWith(testCtx(t), cacheNode("cache-1"), nil, Config{MaxHavesPerAnnounce: 2, Logger: discard()})
	defer m.Close()
	eventually(t, "registration", m.Registered)
	for r := range 5 {
		m.Update(have(root(fmt.Sprint(r)), 8, 1))
	}
	eventually(t, "all updates to arrive", func() bool { return len(holdings(t, c, "cache-1")) == 5 })
	if n := tr.count("Announce"); n < 3 {
		t.Errorf("5 roots at 2 per call took %d Announce calls, want at least 3", n)
	}
}

// When the lease is lost, the member registers again and re-announces
// everything.
func TestReregisterAfterLeaseLost(t *testing.T) {
	tr := startTracker(t, "127.0.0.1:0", trackerserver.Config{LeaseTTL: 2 * time.Second})
	c := dial(t, tr.addr)
	etcd := newEtcdClient(t)
	ctx := testCtx(t)
	a := root("a")
	m := c.JoinWith(ctx, cacheNode("cache-1"), func() []*trackerv1.Have { return []*trackerv1.Have{have(a, 4, 0, 1, 2)} }, Config{Logger: discard()})
	defer m.Close()
	eventually(t, "initial holdings", func() bool { return holdings(t, c, "cache-1")[hexRoot(a)] == 3 })

	nodeKey := testPrefix(t) + "nodes/cache-1"
	lease := func() int64 {
		resp, err := etcd.Get(ctx, nodeKey)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) == 0 {
			return 0
		}
		return resp.Kvs[0].Lease
	}
	old := lease()
	if _, err := etcd.Revoke(ctx, clientv3.LeaseID(old)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "re-registration with holdings", func() bool {
		l := lease()
		return l != 0 && l != old && holdings(t, c, "cache-1")[hexRoot(a)] == 3 && m.Registered()
	})
	if n := tr.count("Register"); n < 2 {
		t.Errorf("%d Register calls, want at least 2", n)
	}
}

// A member started while no tracker is up registers once one comes up.
func TestJoinWaitsForTracker(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there for now
	c := dial(t, addr)
	m := c.JoinWith(testCtx(t), cacheNode("cache-1"), nil, Config{MaxBackoff: 200 * time.Millisecond, Logger: discard()})
	defer m.Close()
	if m.Registered() {
		t.Fatal("registered with no tracker")
	}
	startTracker(t, addr, trackerserver.Config{})
	eventually(t, "registration", m.Registered)
}

// Calls keep working when one of the listed trackers goes away.
func TestFailover(t *testing.T) {
	a := startTracker(t, "127.0.0.1:0", trackerserver.Config{})
	b := startTracker(t, "127.0.0.1:0", trackerserver.Config{})
	c := dial(t, a.addr+","+b.addr)
	ctx := testCtx(t)
	for range 10 {
		if _, err := c.ListNodes(ctx, &trackerv1.ListNodesRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if a.count("ListNodes") == 0 || b.count("ListNodes") == 0 {
		t.Errorf("calls not spread: a %d, b %d", a.count("ListNodes"), b.count("ListNodes"))
	}
	a.stop()
	for i := range 20 {
		if _, err := c.ListNodes(ctx, &trackerv1.ListNodesRequest{}); err != nil {
			t.Fatalf("call %d after one tracker stopped: %v", i, err)
		}
	}
	m := c.Join(ctx, cacheNode("cache-1"), nil)
	defer m.Close()
	eventually(t, "registration through the remaining tracker", m.Registered)
	if got := nodeIDs(t, c); !slices.Equal(got, []string{"cache-1"}) {
		t.Errorf("nodes = %v", got)
	}
}

func span(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}
