package trackerclient

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/etcdembed"
	"github.com/p2pd/p2pd/services/tracker/trackertest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// testEndpoints are the client endpoints of the etcd shared by the tests;
// each test works under its own key prefix.
var testEndpoints []string

func TestMain(m *testing.M) { os.Exit(etcdembed.RunTests(m, &testEndpoints)) }

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func dial(t *testing.T, addrs string) *Client {
	t.Helper()
	c, err := Dial(addrs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// holdings returns chunks held per root (hex) for node id.
func holdings(t *testing.T, c *Client, id string) map[string]uint32 {
	t.Helper()
	resp, err := c.ListNodes(trackertest.Ctx(t), &trackerv1.ListNodesRequest{})
	if err != nil {
		t.Fatalf("list nodes: %v", err)
	}
	return resp.Holdings[id].GetChunksByRoot()
}

func nodeIDs(t *testing.T, c *Client) []string {
	t.Helper()
	resp, err := c.ListNodes(trackertest.Ctx(t), &trackerv1.ListNodesRequest{})
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
	tr := trackertest.StartAt(t, "127.0.0.1:0", testEndpoints, trackertest.Options{})
	c := dial(t, tr.Addr)
	a, b := trackertest.Root("a"), trackertest.Root("b")
	m := c.Join(trackertest.Ctx(t), cacheNode("cache-1"), func() []*trackerv1.Have {
		return []*trackerv1.Have{trackertest.Have(a, 4, 0, 1), trackertest.Have(b, 2, 1)}
	})
	trackertest.Eventually(t, "registration", m.Registered)
	trackertest.Eventually(t, "initial holdings", func() bool {
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
	tr := trackertest.StartAt(t, "127.0.0.1:0", testEndpoints, trackertest.Options{})
	c := dial(t, tr.Addr)
	m := c.Join(trackertest.Ctx(t), cacheNode("cache-1"), nil)
	defer m.Close()
	trackertest.Eventually(t, "registration", m.Registered)
	const roots, chunks = 5, 64
	// Encode first: the burst itself must be quick, as a node's is.
	var burst []*trackerv1.Have
	for i := range chunks {
		for r := range roots {
			burst = append(burst, trackertest.Have(trackertest.Root(fmt.Sprint(r)), chunks, span(0, i+1)...))
		}
	}
	before := tr.Calls("Announce")
	for _, h := range burst {
		m.Update(h)
	}
	trackertest.Eventually(t, "all updates to arrive", func() bool {
		h := holdings(t, c, "cache-1")
		for r := range roots {
			if h[hexRoot(trackertest.Root(fmt.Sprint(r)))] != chunks {
				return false
			}
		}
		return true
	})
	// The burst takes well under one flush delay; allow it to straddle a
	// flush or two.
	if n := tr.Calls("Announce") - before; n < 1 || n > 3 {
		t.Errorf("%d updates took %d Announce calls, want 1 to 3", roots*chunks, n)
	}
}

// Holdings over the per-call limit are split into several calls.
func TestUpdateSplits(t *testing.T) {
	tr := trackertest.StartAt(t, "127.0.0.1:0", testEndpoints, trackertest.Options{})
	c := dial(t, tr.Addr)
	m := c.JoinWith(trackertest.Ctx(t), cacheNode("cache-1"), nil, Config{MaxHavesPerAnnounce: 2, Logger: discard()})
	defer m.Close()
	trackertest.Eventually(t, "registration", m.Registered)
	for r := range 5 {
		m.Update(trackertest.Have(trackertest.Root(fmt.Sprint(r)), 8, 1))
	}
	trackertest.Eventually(t, "all updates to arrive", func() bool { return len(holdings(t, c, "cache-1")) == 5 })
	if n := tr.Calls("Announce"); n < 3 {
		t.Errorf("5 roots at 2 per call took %d Announce calls, want at least 3", n)
	}
}

// When the lease is lost, the member registers again and re-announces
// everything.
func TestReregisterAfterLeaseLost(t *testing.T) {
	tr := trackertest.StartAt(t, "127.0.0.1:0", testEndpoints, trackertest.Options{LeaseTTL: 2 * time.Second})
	c := dial(t, tr.Addr)
	etcd := trackertest.Etcd(t, testEndpoints)
	ctx := trackertest.Ctx(t)
	a := trackertest.Root("a")
	m := c.JoinWith(ctx, cacheNode("cache-1"), func() []*trackerv1.Have { return []*trackerv1.Have{trackertest.Have(a, 4, 0, 1, 2)} }, Config{Logger: discard()})
	defer m.Close()
	trackertest.Eventually(t, "initial holdings", func() bool { return holdings(t, c, "cache-1")[hexRoot(a)] == 3 })

	nodeKey := trackertest.Prefix(t) + "nodes/cache-1"
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
	trackertest.Eventually(t, "re-registration with holdings", func() bool {
		l := lease()
		return l != 0 && l != old && holdings(t, c, "cache-1")[hexRoot(a)] == 3 && m.Registered()
	})
	if n := tr.Calls("Register"); n < 2 {
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
	m := c.JoinWith(trackertest.Ctx(t), cacheNode("cache-1"), nil, Config{MaxBackoff: 200 * time.Millisecond, Logger: discard()})
	defer m.Close()
	if m.Registered() {
		t.Fatal("registered with no tracker")
	}
	trackertest.StartAt(t, addr, testEndpoints, trackertest.Options{})
	trackertest.Eventually(t, "registration", m.Registered)
}

// Calls keep working when one of the listed trackers goes away.
func TestFailover(t *testing.T) {
	a := trackertest.StartAt(t, "127.0.0.1:0", testEndpoints, trackertest.Options{})
	b := trackertest.StartAt(t, "127.0.0.1:0", testEndpoints, trackertest.Options{})
	c := dial(t, a.Addr+","+b.Addr)
	ctx := trackertest.Ctx(t)
	// Round robin spreads calls over the connections that are ready; the
	// second may still be connecting for the first few calls on a busy
	// machine, so ask until both have answered (bounded).
	for i := 0; i < 200 && (i < 10 || a.Calls("ListNodes") == 0 || b.Calls("ListNodes") == 0); i++ {
		if _, err := c.ListNodes(ctx, &trackerv1.ListNodesRequest{}); err != nil {
			t.Fatal(err)
		}
		if i >= 10 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if a.Calls("ListNodes") == 0 || b.Calls("ListNodes") == 0 {
		t.Errorf("calls not spread: a %d, b %d", a.Calls("ListNodes"), b.Calls("ListNodes"))
	}
	a.Stop()
	for i := range 20 {
		if _, err := c.ListNodes(ctx, &trackerv1.ListNodesRequest{}); err != nil {
			t.Fatalf("call %d after one tracker stopped: %v", i, err)
		}
	}
	m := c.Join(ctx, cacheNode("cache-1"), nil)
	defer m.Close()
	trackertest.Eventually(t, "registration through the remaining tracker", m.Registered)
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
