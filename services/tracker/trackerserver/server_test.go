package trackerserver

import (
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

const (
	origin    = trackerv1.Role_ROLE_ORIGIN
	cachenode = trackerv1.Role_ROLE_CACHENODE
	edge      = trackerv1.Role_ROLE_EDGE
)

// A node that stops heartbeating disappears with its holdings when its
// lease expires.
func TestRegisterHeartbeatExpiry(t *testing.T) {
	f := newFixture(t)
	c, _ := f.tracker(Config{LeaseTTL: 2 * time.Second})
	ctx := testCtx(t)
	r := root("expiry")

	lease := register(t, c, "cache-1", cachenode)
	announce(t, c, "cache-1", lease, have(r, 4, 0, 1))
	if got := nodeIDs(t, c); !slices.Equal(got, []string{"cache-1"}) {
		t.Fatalf("nodes = %v, want [cache-1]", got)
	}
	if _, err := c.Heartbeat(ctx, &trackerv1.HeartbeatRequest{NodeId: "cache-1", LeaseId: lease, Secret: secretOf("cache-1")}); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	_, err := c.Heartbeat(ctx, &trackerv1.HeartbeatRequest{NodeId: "cache-2", LeaseId: lease, Secret: secretOf("cache-2")})
	wantCode(t, err, codes.NotFound)

	eventually(t, "node to expire", func() bool { return len(nodeIDs(t, c)) == 0 })
	resp, err := c.Locate(ctx, &trackerv1.LocateRequest{Root: r, ChunkCount: 4})
	if err != nil {
		t.Fatal(err)
	}
	for i, cs := range resp.Chunks {
		if len(cs.NodeIndex) != 0 {
			t.Errorf("chunk %d: sources %v after expiry", i, sources(resp)[i])
		}
	}
	list, err := c.ListNodes(ctx, &trackerv1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Holdings) != 0 {
		t.Errorf("holdings after expiry: %v", list.Holdings)
	}
	_, err = c.Heartbeat(ctx, &trackerv1.HeartbeatRequest{NodeId: "cache-1", LeaseId: lease, Secret: secretOf("cache-1")})
	wantCode(t, err, codes.NotFound)
	_, err = c.Announce(ctx, &trackerv1.AnnounceRequest{NodeId: "cache-1", LeaseId: lease, Secret: secretOf("cache-1"), Haves: []*trackerv1.Have{have(r, 4, 0)}})
	wantCode(t, err, codes.NotFound)
}

func TestHeartbeatLoad(t *testing.T) {
	f := newFixture(t)
	c, _ := f.tracker(Config{})
	lease := register(t, c, "cache-1", cachenode)
	tests := []struct {
		load     uint32
		held     uint64
		wantLoad uint32 // as stored: only notable changes are written
		wantHeld uint64
	}{
		{load: 1, held: 1000, wantLoad: 1, wantHeld: 1000},
		{load: 1, held: 1010, wantLoad: 1, wantHeld: 1000}, // 1% more held: not notable
		{load: 3, held: 1010, wantLoad: 3, wantHeld: 1010}, // load bucket changed
		{load: 2, held: 1010, wantLoad: 3, wantHeld: 1010}, // same bucket (2..3)
		{load: 0, held: 5000, wantLoad: 0, wantHeld: 5000},
	}
	for i, tt := range tests {
		_, err := c.Heartbeat(testCtx(t), &trackerv1.HeartbeatRequest{NodeId: "cache-1", LeaseId: lease, Secret: secretOf("cache-1"), Load: tt.load, HeldBytes: tt.held})
		if err != nil {
			t.Fatalf("step %d: heartbeat: %v", i, err)
		}
		list, err := c.ListNodes(testCtx(t), &trackerv1.ListNodesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		n := list.Nodes[0]
		if n.Load != tt.wantLoad || n.HeldBytes != tt.wantHeld {
			t.Errorf("step %d: stored load %d held %d, want %d and %d", i, n.Load, n.HeldBytes, tt.wantLoad, tt.wantHeld)
		}
	}
}

func TestUnregister(t *testing.T) {
	f := newFixture(t)
	c, _ := f.tracker(Config{})
	ctx := testCtx(t)
	lease := register(t, c, "cache-1", cachenode)
	announce(t, c, "cache-1", lease, have(root("u"), 2, 0))
	for i := 0; i < 2; i++ { // the second time the node is gone already
		if _, err := c.Unregister(ctx, &trackerv1.UnregisterRequest{NodeId: "cache-1", LeaseId: lease, Secret: secretOf("cache-1")}); err != nil {
			t.Fatalf("unregister #%d: %v", i+1, err)
		}
	}
	if got := nodeIDs(t, c); len(got) != 0 {
		t.Fatalf("nodes after unregister = %v", got)
	}
	resp, err := f.etcd.Get(ctx, f.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 0 {
		t.Errorf("%d keys left in etcd after unregister", resp.Count)
	}
	_, err = c.Unregister(ctx, &trackerv1.UnregisterRequest{NodeId: "cache/1", LeaseId: lease, Secret: secretOf("cache/1")})
	wantCode(t, err, codes.InvalidArgument)
}

// Registering again (a restart within the TTL) revokes the previous lease,
// so holdings the node no longer announces go with it.
func TestRegisterReplacesLease(t *testing.T) {
	f := newFixture(t)
	c, _ := f.tracker(Config{})
	ctx := testCtx(t)
	r := root("replace")
	old := register(t, c, "cache-1", cachenode)
	announce(t, c, "cache-1", old, have(r, 4, 0, 1, 2, 3))
	lease := register(t, c, "cache-1", cachenode)
	if lease == old {
		t.Fatal("same lease after re-registering")
	}
	ttl, err := f.etcd.TimeToLive(ctx, clientv3.LeaseID(old))
	if err != nil {
		t.Fatal(err)
	}
	if ttl.TTL > 0 {
		t.Errorf("old lease still alive (ttl %d)", ttl.TTL)
	}
	eventually(t, "old holdings to go", func() bool {
		list, err := c.ListNodes(ctx, &trackerv1.ListNodesRequest{})
		return err == nil && len(list.Holdings) == 0 && len(list.Nodes) == 1
	})
	_, err = c.Heartbeat(ctx, &trackerv1.HeartbeatRequest{NodeId: "cache-1", LeaseId: old, Secret: secretOf("cache-1")})
	wantCode(t, err, codes.NotFound)
	if _, err := c.Heartbeat(ctx, &trackerv1.HeartbeatRequest{NodeId: "cache-1", LeaseId: lease, Secret: secretOf("cache-1")}); err != nil {
		t.Fatalf("heartbeat with the new lease: %v", err)
	}
}

func TestRegisterInvalid(t *testing.T) {
	f := newFixture(t)
	c, _ := f.tracker(Config{})
	tests := []struct {
		name string
		node *trackerv1.Node
		want string
	}{
		{"missing", nil, "missing"},
		{"empty id", &trackerv1.Node{Role: cachenode, GrpcAddr: "a:1"}, "empty"},
		{"slash", &trackerv1.Node{Id: "a/b", Role: cachenode, GrpcAddr: "a:1"}, "slash"},
		{"long id", &trackerv1.Node{Id: strings.Repeat("x", 300), Role: cachenode, GrpcAddr: "a:1"}, "at most"},
		{"no role", &trackerv1.Node{Id: "a", GrpcAddr: "a:1"}, "role"},
		{"unknown role", &trackerv1.Node{Id: "a", Role: 42, GrpcAddr: "a:1"}, "role"},
		{"cachenode without address", &trackerv1.Node{Id: "a", Role: cachenode}, "grpc_addr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Register(testCtx(t), &trackerv1.RegisterRequest{Node: tt.node})
			wantCode(t, err, codes.InvalidArgument)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
	// An edge serves no chunks and needs no gRPC address.
	if _, err := c.Register(testCtx(t), &trackerv1.RegisterRequest{Node: &trackerv1.Node{Id: "edge-1", Role: edge}}); err != nil {
		t.Errorf("register edge: %v", err)
	}
}

func TestAnnounceInvalid(t *testing.T) {
	f := newFixture(t)
	c, _ := f.tracker(Config{MaxHavesPerAnnounce: 3, MaxAnnounceBytes: 4096})
	lease := register(t, c, "cache-1", cachenode)
	r := root("invalid")
	big := make([]byte, 5000)
	tests := []struct {
		name  string
		id    string
		lease int64
		haves []*trackerv1.Have
		code  codes.Code
		want  string
	}{
		{"bad node id", "", lease, nil, codes.InvalidArgument, "empty"},
		{"no lease", "cache-1", 0, []*trackerv1.Have{have(r, 4, 0)}, codes.InvalidArgument, "lease_id"},
		{"short root", "cache-1", lease, []*trackerv1.Have{{Root: []byte{1, 2}, ChunkCount: 4, Bitmap: have(r, 4, 0).Bitmap}}, codes.InvalidArgument, "root"},
		{"duplicate root", "cache-1", lease, []*trackerv1.Have{have(r, 4, 0), have(r, 4, 1)}, codes.InvalidArgument, "twice"},
		{"zero chunks", "cache-1", lease, []*trackerv1.Have{{Root: r, Bitmap: have(r, 4, 0).Bitmap}}, codes.InvalidArgument, "chunk_count"},
		{"bitmap too long", "cache-1", lease, []*trackerv1.Have{{Root: r, ChunkCount: 4, Bitmap: have(r, 100, 99).Bitmap}}, codes.InvalidArgument, "trailing"},
		{"bitmap too short", "cache-1", lease, []*trackerv1.Have{{Root: r, ChunkCount: 100, Bitmap: have(r, 4, 0).Bitmap}}, codes.InvalidArgument, "bitmap"},
		{"not deflate", "cache-1", lease, []*trackerv1.Have{{Root: r, ChunkCount: 4, Bitmap: []byte{0xff, 0xff}}}, codes.InvalidArgument, "bitmap"},
		{"too many", "cache-1", lease, []*trackerv1.Have{have(root("1"), 1, 0), have(root("2"), 1, 0), have(root("3"), 1, 0), have(root("4"), 1, 0)}, codes.InvalidArgument, "at most 3"},
		{"too big", "cache-1", lease, []*trackerv1.Have{{Root: r, ChunkCount: 4, Bitmap: big}}, codes.InvalidArgument, "bytes"},
		{"wrong lease", "cache-1", lease + 1, []*trackerv1.Have{have(r, 4, 0)}, codes.NotFound, "register again"},
		{"unknown node", "cache-9", lease, []*trackerv1.Have{have(r, 4, 0)}, codes.NotFound, "not registered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Announce(testCtx(t), &trackerv1.AnnounceRequest{NodeId: tt.id, LeaseId: tt.lease, Secret: secretOf(tt.id), Haves: tt.haves})
			wantCode(t, err, tt.code)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

// An empty or all-clear bitmap removes the node's record for the file.
func TestAnnounceRemoves(t *testing.T) {
	f := newFixture(t)
	c, _ := f.tracker(Config{})
	ctx := testCtx(t)
	a, b := root("a"), root("b")
	lease := register(t, c, "cache-1", cachenode)
	announce(t, c, "cache-1", lease, have(a, 8, 1, 2), have(b, 8, 3))
	holdings := func() map[string]uint32 {
		list, err := c.ListNodes(ctx, &trackerv1.ListNodesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return list.Holdings["cache-1"].GetChunksByRoot()
	}
	if got := holdings(); len(got) != 2 || got[rootHex(a)] != 2 || got[rootHex(b)] != 1 {
		t.Fatalf("holdings = %v", got)
	}
	announce(t, c, "cache-1", lease, &trackerv1.Have{Root: a}, have(b, 8))
	if got := holdings(); len(got) != 0 {
		t.Fatalf("holdings after clearing = %v", got)
	}
	resp, err := f.etcd.Get(ctx, f.prefix+haveDir, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 0 {
		t.Errorf("%d have keys left in etcd", resp.Count)
	}
}

func rootHex(r []byte) string {
	var k keys
	return strings.TrimSuffix(strings.TrimPrefix(k.have([32]byte(r), "x"), haveDir), "/x")
}

// fakeClock is a clock safe to read from RPC goroutines.
type fakeClock struct{ nanos atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.nanos.Store(time.Unix(1_000_000, 0).UnixNano())
	return c
}
func (c *fakeClock) now() time.Time          { return time.Unix(0, c.nanos.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.nanos.Add(int64(d)) }

// locateSetup registers a small CDN holding file "movie" (8 chunks):
//
//	origin   all chunks   1 MB/s
//	cache-1  0-3          100 MB/s
//	cache-2  2-5          10 MB/s, busy (load 8)
//	cache-3  nothing      never measured
//	edge-1   chunk 0 (an edge: never a source, whatever it announces)
func locateSetup(f *fixture, c trackerv1.TrackerServiceClient) []byte {
	t := f.t
	t.Helper()
	ctx := testCtx(t)
	r := root("movie")
	if _, err := c.PublishFile(ctx, &trackerv1.PublishFileRequest{File: &trackerv1.File{
		Name: "movie.mp4", Size: 8 << 20, ChunkSize: 1 << 20, ChunkCount: 8, Root: r,
	}}); err != nil {
		t.Fatal(err)
	}
	lo := register(t, c, "origin", origin)
	announce(t, c, "origin", lo, have(r, 8, span(0, 8)...))
	l1 := register(t, c, "cache-1", cachenode)
	announce(t, c, "cache-1", l1, have(r, 8, span(0, 4)...))
	l2 := register(t, c, "cache-2", cachenode)
	announce(t, c, "cache-2", l2, have(r, 8, span(2, 6)...))
	if _, err := c.Heartbeat(ctx, &trackerv1.HeartbeatRequest{NodeId: "cache-2", LeaseId: l2, Secret: secretOf("cache-2"), Load: 8}); err != nil {
		t.Fatal(err)
	}
	register(t, c, "cache-3", cachenode)
	le := register(t, c, "edge-1", edge)
	// Even an edge that claims chunks is never handed out as a source.
	announce(t, c, "edge-1", le, have(r, 8, 0))
	if err := f.report(c, "edge-1", []*trackerv1.RateSample{
		{Source: "origin", Bytes: 1e6, DurationNanos: int64(time.Second)},
		{Source: "cache-1", Bytes: 100e6, DurationNanos: int64(time.Second)},
		{Source: "cache-2", Bytes: 10e6, DurationNanos: int64(time.Second)},
		{Source: "gone", Bytes: 1e9, DurationNanos: 1},        // unknown: ignored
		{Source: "cache-3", Bytes: 100, DurationNanos: 1_000}, // too small to measure
	}...); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestLocate(t *testing.T) {
	f := newFixture(t)
	clk := newFakeClock()
	c, _ := f.tracker(Config{PeerSharing: true, Now: clk.now})
	// A second tracker on the same etcd without peer sharing.
	isolated, _ := f.tracker(Config{PeerSharing: false, Now: clk.now})
	r := locateSetup(f, c)

	all := [][]string{
		{"cache-1", "origin"},
		{"cache-1", "origin"},
		{"cache-1", "cache-2", "origin"},
		{"cache-1", "cache-2", "origin"},
		{"cache-2", "origin"},
		{"cache-2", "origin"},
		{"origin"},
		{"origin"},
	}
	tests := []struct {
		name    string
		tracker trackerv1.TrackerServiceClient
		req     *trackerv1.LocateRequest
		want    [][]string
	}{
		{"holders by rate", c, &trackerv1.LocateRequest{ChunkCount: 8}, all},
		{"sub-range", c, &trackerv1.LocateRequest{FirstChunk: 3, ChunkCount: 2}, all[3:5]},
		{
			// cache-3's unknown rate counts as the median (cache-2's
			// bucket); it is idle while cache-2 is busy, so it comes first.
			"include non-holders", c,
			&trackerv1.LocateRequest{ChunkCount: 8, IncludeNonHolders: true, MaxSources: 8},
			[][]string{
				{"cache-1", "origin", "cache-3?", "cache-2?"},
				{"cache-1", "origin", "cache-3?", "cache-2?"},
				{"cache-1", "cache-2", "origin", "cache-3?"},
				{"cache-1", "cache-2", "origin", "cache-3?"},
				{"cache-2", "origin", "cache-1?", "cache-3?"},
				{"cache-2", "origin", "cache-1?", "cache-3?"},
				{"origin", "cache-1?", "cache-3?", "cache-2?"},
				{"origin", "cache-1?", "cache-3?", "cache-2?"},
			},
		},
		{"max sources", c, &trackerv1.LocateRequest{ChunkCount: 4, MaxSources: 1},
			[][]string{{"cache-1"}, {"cache-1"}, {"cache-1"}, {"cache-1"}}},
		{"requester excluded", c, &trackerv1.LocateRequest{ChunkCount: 4, Requester: "cache-1"},
			[][]string{{"origin"}, {"origin"}, {"cache-2", "origin"}, {"cache-2", "origin"}}},
		{"roles filter", c, &trackerv1.LocateRequest{ChunkCount: 3, Roles: []trackerv1.Role{origin}},
			[][]string{{"origin"}, {"origin"}, {"origin"}}},
		{"edge role asked explicitly holds nothing", c, &trackerv1.LocateRequest{ChunkCount: 1, Roles: []trackerv1.Role{edge}, IncludeNonHolders: true},
			[][]string{{}}},
		{"no peer sharing: cachenode gets origins", isolated,
			&trackerv1.LocateRequest{ChunkCount: 4, Requester: "cache-1", IncludeNonHolders: true},
			[][]string{{"origin"}, {"origin"}, {"origin"}, {"origin"}}},
		{"no peer sharing: edges still get caches", isolated, &trackerv1.LocateRequest{ChunkCount: 8}, all},
		{"no peer sharing: named edge too", isolated, &trackerv1.LocateRequest{ChunkCount: 8, Requester: "edge-1"}, all},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := proto.Clone(tt.req).(*trackerv1.LocateRequest)
			req.Root = r
			if tt.tracker == isolated {
				// The isolated tracker learnt no rates: feed it the same.
				locateRates(f, isolated)
			}
			resp, err := tt.tracker.Locate(testCtx(t), req)
			if err != nil {
				t.Fatal(err)
			}
			if got := sources(resp); !slices.EqualFunc(got, tt.want, slices.Equal) {
				t.Errorf("sources =\n%v\nwant\n%v", got, tt.want)
			}
			seen := map[string]bool{}
			for _, n := range resp.Nodes {
				if seen[n.Id] {
					t.Errorf("node %s listed twice", n.Id)
				}
				seen[n.Id] = true
			}
		})
	}

	t.Run("failures put a node on probation", func(t *testing.T) {
		ctx := testCtx(t)
		if err := f.report(c, "edge-1", &trackerv1.RateSample{Source: "cache-1", Failed: true}); err != nil {
			t.Fatal(err)
		}
		locate := func() [][]string {
			resp, err := c.Locate(ctx, &trackerv1.LocateRequest{Root: r, ChunkCount: 1})
			if err != nil {
				t.Fatal(err)
			}
			return sources(resp)
		}
		if got, want := locate(), [][]string{{"origin", "cache-1"}}; !slices.EqualFunc(got, want, slices.Equal) {
			t.Errorf("on probation: %v, want %v", got, want)
		}
		clk.advance(2 * time.Second) // the default first probation
		if got, want := locate(), [][]string{{"cache-1", "origin"}}; !slices.EqualFunc(got, want, slices.Equal) {
			t.Errorf("after probation: %v, want %v", got, want)
		}
	})
}

// locateRates reports locateSetup's rates to tracker c.
func locateRates(f *fixture, c trackerv1.TrackerServiceClient) {
	t := f.t
	t.Helper()
	if err := f.report(c, "edge-1", []*trackerv1.RateSample{
		{Source: "origin", Bytes: 1e6, DurationNanos: int64(time.Second)},
		{Source: "cache-1", Bytes: 100e6, DurationNanos: int64(time.Second)},
		{Source: "cache-2", Bytes: 10e6, DurationNanos: int64(time.Second)},
	}...); err != nil {
		t.Fatal(err)
	}
}

func TestLocateInvalid(t *testing.T) {
	f := newFixture(t)
	c, _ := f.tracker(Config{MaxLocateChunks: 16})
	r := locateSetup(f, c)
	tests := []struct {
		name string
		req  *trackerv1.LocateRequest
		code codes.Code
		want string
	}{
		{"no root", &trackerv1.LocateRequest{ChunkCount: 1}, codes.InvalidArgument, "root"},
		{"no chunks", &trackerv1.LocateRequest{Root: r}, codes.InvalidArgument, "chunk_count"},
		{"too many chunks", &trackerv1.LocateRequest{Root: r, ChunkCount: 17}, codes.InvalidArgument, "chunk_count"},
		{"overflow", &trackerv1.LocateRequest{Root: r, FirstChunk: 1<<32 - 1, ChunkCount: 2}, codes.InvalidArgument, "overflow"},
		{"bad role", &trackerv1.LocateRequest{Root: r, ChunkCount: 1, Roles: []trackerv1.Role{7}}, codes.InvalidArgument, "role"},
		{"past the file", &trackerv1.LocateRequest{Root: r, FirstChunk: 6, ChunkCount: 4}, codes.OutOfRange, "8 chunks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Locate(testCtx(t), tt.req)
			wantCode(t, err, tt.code)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
	// An unpublished root is answered from holdings alone.
	resp, err := c.Locate(testCtx(t), &trackerv1.LocateRequest{Root: root("unpublished"), ChunkCount: 2})
	if err != nil {
		t.Fatalf("locate unpublished root: %v", err)
	}
	if len(resp.Chunks) != 2 || len(resp.Chunks[0].NodeIndex) != 0 {
		t.Errorf("unpublished root: %v", sources(resp))
	}
}

func TestReportRateInvalid(t *testing.T) {
	f := newFixture(t)
	c, _ := f.tracker(Config{MaxRateSamples: 2})
	tests := []struct {
		name    string
		samples []*trackerv1.RateSample
	}{
		{"too many", []*trackerv1.RateSample{{Source: "a"}, {Source: "b"}, {Source: "c"}}},
		{"no source", []*trackerv1.RateSample{{Bytes: 1}}},
		{"negative duration", []*trackerv1.RateSample{{Source: "a", DurationNanos: -1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.ReportRate(testCtx(t), &trackerv1.ReportRateRequest{Samples: tt.samples})
			wantCode(t, err, codes.InvalidArgument)
		})
	}
}
