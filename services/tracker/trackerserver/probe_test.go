package trackerserver

import (
	"net"
	"slices"
	"testing"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/service"
	"google.golang.org/grpc"
)

// liveNode serves the gRPC health service on loopback, as every node does.
func liveNode(t *testing.T) string {
	t.Helper()
	addr, _ := liveNodeStoppable(t)
	return addr
}

// deadAddr is a loopback address where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

// A registered node with nothing listening is never ranked; a live one is
// once the tracker reached it, is dropped at a registered node's failure
// report and returns once it answers again.
func TestProbedRanking(t *testing.T) {
	f := newFixture(t)
	clk := newFakeClock()
	c, _ := f.tracker(Config{PeerSharing: true, ProbeNodes: true, Now: clk.now})
	ctx := testCtx(t)
	r := root("probed")
	live, stop := liveNodeStoppable(t)
	dead := deadAddr(t)
	reg := func(id, addr string) int64 {
		resp, err := c.Register(ctx, &trackerv1.RegisterRequest{Node: &trackerv1.Node{Id: id, Role: cachenode, GrpcAddr: addr}, Secret: secretOf(id)})
		if err != nil {
			t.Fatal(err)
		}
		announce(t, c, id, resp.LeaseId, have(r, 2, 0, 1))
		return resp.LeaseId
	}
	reg("honest", live)
	reg("reporter", liveNode(t))
	for i := range 5 {
		reg("fake-"+string(rune('a'+i)), dead)
	}
	ranked := func() []string {
		resp, err := c.Locate(ctx, &trackerv1.LocateRequest{Root: r, ChunkCount: 1, MaxSources: 32})
		if err != nil {
			t.Fatal(err)
		}
		got := sources(resp)[0]
		slices.Sort(got)
		return got
	}
	want := []string{"honest", "reporter"}
	eventually(t, "the live nodes to be ranked", func() bool { return slices.Equal(ranked(), want) })
	// Failure reports bring no fake in, and a stranger's cannot drop a
	// node the tracker reached.
	if _, err := f.dial().ReportRate(ctx, &trackerv1.ReportRateRequest{Reporter: "stranger", Samples: []*trackerv1.RateSample{{Source: "honest", Failed: true}}}); err != nil {
		t.Fatal(err)
	}
	if got := ranked(); !slices.Equal(got, want) {
		t.Fatalf("after a stranger's failure report: ranked %v, want %v", got, want)
	}
	// The honest node goes silent; the first failure a registered node
	// reports drops it, and it stays out while probes go unanswered.
	stop()
	clk.advance(probeTrust)
	if err := f.report(c, "reporter", &trackerv1.RateSample{Source: "honest", Failed: true}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if got := ranked(); !slices.Equal(got, []string{"reporter"}) {
			t.Fatalf("ranked %v after honest went silent, want [reporter]", got)
		}
	}
	// Back on its address: it returns once a probe answers.
	listenAt(t, live)
	eventually(t, "the node to return", func() bool {
		clk.advance(probeEvery) // the next probe is due
		return slices.Equal(ranked(), want)
	})
}

// liveNodeStoppable is liveNode with a way to take it down.
func liveNodeStoppable(t *testing.T) (string, func()) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	service.AddHealth(gs)
	go gs.Serve(l)
	t.Cleanup(gs.Stop)
	return l.Addr().String(), gs.Stop
}

// listenAt serves the health service at addr again.
func listenAt(t *testing.T, addr string) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	service.AddHealth(gs)
	go gs.Serve(l)
	t.Cleanup(gs.Stop)
}

// A node is probed when it registers, not when someone first asks for it,
// so the first Locate after a node joins already ranks it.
func TestProbedAtRegistration(t *testing.T) {
	f := newFixture(t)
	c, srv := f.tracker(Config{PeerSharing: true, ProbeNodes: true})
	ctx := testCtx(t)
	resp, err := c.Register(ctx, &trackerv1.RegisterRequest{Node: &trackerv1.Node{Id: "fresh", Role: cachenode, GrpcAddr: liveNode(t)}, Secret: secretOf("fresh")})
	if err != nil {
		t.Fatal(err)
	}
	announce(t, c, "fresh", resp.LeaseId, have(root("fresh"), 2, 0, 1))
	// No Locate yet: only the registration can have started the probe.
	eventually(t, "the new node to be probed", func() bool {
		srv.probe.mu.Lock()
		defer srv.probe.mu.Unlock()
		r := srv.probe.nodes["fresh"]
		return r != nil && r.ok
	})
	loc, err := c.Locate(ctx, &trackerv1.LocateRequest{Root: root("fresh"), ChunkCount: 1, MaxSources: 8})
	if err != nil {
		t.Fatal(err)
	}
	if got := sources(loc)[0]; !slices.Equal(got, []string{"fresh"}) {
		t.Fatalf("first Locate ranks %v, want [fresh]", got)
	}
}
