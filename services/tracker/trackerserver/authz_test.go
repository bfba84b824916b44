package trackerserver

import (
	"context"
	"net"
	"slices"
	"testing"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/nodeauth"
	"github.com/p2pd/p2pd/internal/tlsconfig"
	"github.com/p2pd/p2pd/internal/tlsconfig/tlstest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// Every attack of issue 12 on the tracker from a process that merely
// reaches its port (no certificate, no token), on an open tracker.
func TestOutsiderCannot(t *testing.T) {
	f := newFixture(t)
	o, _ := f.tracker(Config{PeerSharing: true})
	r := locateSetup(f, o) // origin, cache-1..3, edge-1, movie.mp4
	before, err := o.GetFile(testCtx(t), &trackerv1.GetFileRequest{Name: "movie.mp4"})
	if err != nil {
		t.Fatal(err)
	}
	lease1 := f.leaseOf("cache-1")
	x := f.dial() // the outsider
	wrong := secretOf("attacker")
	tests := []struct {
		name string
		call func(context.Context) error
		want codes.Code
	}{
		{"publish its own root", func(ctx context.Context) error {
			_, err := x.PublishFile(ctx, &trackerv1.PublishFileRequest{File: file("movie.mp4", 5<<20)})
			return err
		}, codes.PermissionDenied},
		{"unpublish", func(ctx context.Context) error {
			_, err := x.UnpublishFile(ctx, &trackerv1.UnpublishFileRequest{Name: "movie.mp4"})
			return err
		}, codes.PermissionDenied},
		{"purge every cache", func(ctx context.Context) error {
			_, err := x.PostCommand(ctx, &trackerv1.PostCommandRequest{Command: &trackerv1.Command{Action: trackerv1.CommandAction_COMMAND_ACTION_PURGE, Root: r}})
			return err
		}, codes.PermissionDenied},
		{"register as an origin", func(ctx context.Context) error {
			_, err := x.Register(ctx, &trackerv1.RegisterRequest{Node: &trackerv1.Node{Id: "evil-origin", Role: origin, GrpcAddr: "127.0.0.1:9"}})
			return err
		}, codes.PermissionDenied},
		{"register a live node's id", func(ctx context.Context) error {
			_, err := x.Register(ctx, &trackerv1.RegisterRequest{Node: &trackerv1.Node{Id: "cache-1", Role: cachenode, GrpcAddr: "127.0.0.1:9"}, Secret: wrong})
			return err
		}, codes.AlreadyExists},
		{"unregister a live node", func(ctx context.Context) error {
			_, err := x.Unregister(ctx, &trackerv1.UnregisterRequest{NodeId: "cache-1", LeaseId: lease1, Secret: wrong})
			return err
		}, codes.PermissionDenied},
		{"heartbeat a live node", func(ctx context.Context) error {
			_, err := x.Heartbeat(ctx, &trackerv1.HeartbeatRequest{NodeId: "cache-1", LeaseId: lease1})
			return err
		}, codes.PermissionDenied},
		{"announce for a live node", func(ctx context.Context) error {
			_, err := x.Announce(ctx, &trackerv1.AnnounceRequest{NodeId: "cache-1", LeaseId: lease1, Haves: []*trackerv1.Have{{Root: r}}})
			return err
		}, codes.PermissionDenied},
		{"report rates as a live node", func(ctx context.Context) error {
			_, err := x.ReportRate(ctx, &trackerv1.ReportRateRequest{Reporter: "cache-2", Samples: []*trackerv1.RateSample{{Source: "cache-1", Failed: true}}})
			return err
		}, codes.PermissionDenied},
		{"report rates with a guessed secret", func(ctx context.Context) error {
			_, err := x.ReportRate(ctx, &trackerv1.ReportRateRequest{Reporter: "cache-2", LeaseId: f.leaseOf("cache-2"), Secret: wrong, Samples: []*trackerv1.RateSample{{Source: "cache-1", Failed: true}}})
			return err
		}, codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantCode(t, tt.call(testCtx(t)), tt.want)
		})
	}
	t.Run("sweep of lease ids", func(t *testing.T) {
		ids := nodeIDs(t, o)
		for l := lease1 - 100; l < lease1+100; l++ {
			for _, id := range ids {
				x.Unregister(testCtx(t), &trackerv1.UnregisterRequest{NodeId: id, LeaseId: l})
			}
		}
	})
	t.Run("anonymous failures shape only the reporter's view", func(t *testing.T) {
		for range 3 {
			if _, err := x.ReportRate(testCtx(t), &trackerv1.ReportRateRequest{Reporter: "stranger", Samples: []*trackerv1.RateSample{{Source: "cache-1", Failed: true}}}); err != nil {
				t.Fatal(err)
			}
		}
		first := func(requester string) string {
			resp, err := o.Locate(testCtx(t), &trackerv1.LocateRequest{Root: r, ChunkCount: 1, Requester: requester})
			if err != nil {
				t.Fatal(err)
			}
			return sources(resp)[0][0]
		}
		if got := first("edge-2"); got != "cache-1" {
			t.Errorf("another requester is sent to %s first, want cache-1", got)
		}
		if got := first("stranger"); got == "cache-1" {
			t.Errorf("the reporter is still sent to cache-1 first")
		}
	})
	// What must hold: every node is still there under its own lease, and
	// the name still maps to the origin's root.
	if got, want := nodeIDs(t, o), []string{"cache-1", "cache-2", "cache-3", "edge-1", "origin"}; !slices.Equal(got, want) {
		t.Errorf("nodes %v, want %v", got, want)
	}
	if got := f.leaseOf("cache-1"); got != lease1 {
		t.Errorf("cache-1's lease %d, want %d", got, lease1)
	}
	after, err := o.GetFile(testCtx(t), &trackerv1.GetFileRequest{Name: "movie.mp4"})
	if err != nil || !proto.Equal(after.File, before.File) {
		t.Errorf("movie.mp4 now %v (%v), want %v", after.GetFile(), err, before.File)
	}
	// The outsider may join as a cachenode under a free id: its chunks
	// are verified by whoever fetches them.
	resp, err := x.Register(testCtx(t), &trackerv1.RegisterRequest{Node: &trackerv1.Node{Id: "stranger", Role: cachenode, GrpcAddr: "127.0.0.1:9"}})
	if err != nil || len(resp.Secret) < nodeauth.MinSecretLen {
		t.Fatalf("open join: %v (secret %q)", err, resp.GetSecret())
	}
	// Its own secret works, and only for itself.
	if _, err := x.Heartbeat(testCtx(t), &trackerv1.HeartbeatRequest{NodeId: "stranger", LeaseId: resp.LeaseId, Secret: resp.Secret}); err != nil {
		t.Fatal(err)
	}
	_, err = x.Unregister(testCtx(t), &trackerv1.UnregisterRequest{NodeId: "cache-1", LeaseId: lease1, Secret: resp.Secret})
	wantCode(t, err, codes.PermissionDenied)
}

// leaseOf returns node id's current lease, read from etcd.
func (f *fixture) leaseOf(id string) int64 {
	f.t.Helper()
	resp, err := f.etcd.Get(testCtx(f.t), f.prefix+nodesDir+id)
	if err != nil {
		f.t.Fatalf("lease of %s: %v", id, err)
	}
	if len(resp.Kvs) == 0 {
		f.t.Fatalf("lease of %s: not registered", id)
	}
	return resp.Kvs[0].Lease
}

func TestJoinTokenAndLimits(t *testing.T) {
	f := newFixture(t)
	f.tracker(Config{JoinToken: "join-me", MaxNodesPerAddr: 2})
	ctx := testCtx(t)
	reg := func(c trackerv1.TrackerServiceClient, id string) error {
		_, err := c.Register(ctx, &trackerv1.RegisterRequest{Node: &trackerv1.Node{Id: id, Role: cachenode, GrpcAddr: "127.0.0.1:9"}})
		return err
	}
	wantCode(t, reg(f.dial(), "a"), codes.Unauthenticated)
	wantCode(t, reg(f.dial(nodeauth.JoinTokenHeader, "guess"), "a"), codes.Unauthenticated)
	member := f.dial(nodeauth.JoinTokenHeader, "join-me")
	for _, id := range []string{"a", "b"} {
		if err := reg(member, id); err != nil {
			t.Fatalf("register %s with the join token: %v", id, err)
		}
	}
	wantCode(t, reg(member, "c"), codes.ResourceExhausted) // third from 127.0.0.1
}

// With mutual TLS the certificate names the role and id: a cachenode
// certificate can neither publish nor register as anything else.
func TestCertificateIdentity(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	ca, err := tlstest.NewCA(dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	creds := func(name string, uris ...string) *tlsconfig.Creds {
		cert, key, err := ca.Issue(name, append(uris, "127.0.0.1")...)
		if err != nil {
			t.Fatal(err)
		}
		c, err := tlsconfig.New(cert, key, ca.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	srv := New(f.etcd, Config{Prefix: f.prefix, Logger: discard()})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go srv.Run(ctx)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(creds("tracker").ServerOption())
	trackerv1.RegisterTrackerServiceServer(gs, srv)
	go gs.Serve(l)
	t.Cleanup(gs.Stop)
	dial := func(c *tlsconfig.Creds) trackerv1.TrackerServiceClient {
		conn, err := grpc.NewClient(l.Addr().String(), c.DialOption())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return trackerv1.NewTrackerServiceClient(conn)
	}
	cache := dial(creds("cache-1", nodeauth.URI("cachenode", "cache-1").String()))
	orig := dial(creds("origin-1", nodeauth.URI("origin", "origin-1").String()))
	plain := dial(creds("plain"))
	node := func(id string, role trackerv1.Role) *trackerv1.RegisterRequest {
		return &trackerv1.RegisterRequest{Node: &trackerv1.Node{Id: id, Role: role, GrpcAddr: "127.0.0.1:9"}}
	}
	tests := []struct {
		name string
		c    trackerv1.TrackerServiceClient
		call func(context.Context, trackerv1.TrackerServiceClient) error
		want codes.Code
	}{
		{"cachenode cert registers itself", cache, func(ctx context.Context, c trackerv1.TrackerServiceClient) error {
			_, err := c.Register(ctx, node("cache-1", cachenode))
			return err
		}, codes.OK},
		{"cachenode cert as an origin", cache, func(ctx context.Context, c trackerv1.TrackerServiceClient) error {
			_, err := c.Register(ctx, node("cache-1", origin))
			return err
		}, codes.PermissionDenied},
		{"cachenode cert as another id", cache, func(ctx context.Context, c trackerv1.TrackerServiceClient) error {
			_, err := c.Register(ctx, node("cache-2", cachenode))
			return err
		}, codes.PermissionDenied},
		{"cachenode cert publishes", cache, func(ctx context.Context, c trackerv1.TrackerServiceClient) error {
			_, err := c.PublishFile(ctx, &trackerv1.PublishFileRequest{File: file("a.mp4", 1<<20)})
			return err
		}, codes.PermissionDenied},
		{"cert without identity registers a cachenode", plain, func(ctx context.Context, c trackerv1.TrackerServiceClient) error {
			_, err := c.Register(ctx, node("plain-1", cachenode))
			return err
		}, codes.OK},
		{"cert without identity takes a live id", plain, func(ctx context.Context, c trackerv1.TrackerServiceClient) error {
			_, err := c.Register(ctx, node("cache-1", cachenode))
			return err
		}, codes.AlreadyExists},
		{"origin cert publishes", orig, func(ctx context.Context, c trackerv1.TrackerServiceClient) error {
			_, err := c.PublishFile(ctx, &trackerv1.PublishFileRequest{File: file("a.mp4", 1<<20)})
			return err
		}, codes.OK},
		{"origin cert registers itself", orig, func(ctx context.Context, c trackerv1.TrackerServiceClient) error {
			_, err := c.Register(ctx, node("origin-1", origin))
			return err
		}, codes.OK},
		{"cachenode cert takes over its own live id", cache, func(ctx context.Context, c trackerv1.TrackerServiceClient) error {
			_, err := c.Register(ctx, node("cache-1", cachenode))
			return err
		}, codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantCode(t, tt.call(testCtx(t), tt.c), tt.want)
		})
	}
}
