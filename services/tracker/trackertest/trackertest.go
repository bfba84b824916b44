// Package trackertest is the test kit of the services around the
// tracker: a real tracker (over the caller's etcd) serving gRPC on
// loopback, and the polling helpers the tests of every service share.
package trackertest

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/bitmap"
	"github.com/p2pd/p2pd/internal/nodeauth"
	"github.com/p2pd/p2pd/services/tracker/trackerserver"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// patience bounds a broken test's wait: it asserts nothing, so it can be
// generous for a loaded machine.
const patience = 20 * time.Second

// Tracker is a real tracker serving gRPC on loopback until the test ends
// or Stop is called.
type Tracker struct {
	Addr   string                         // host:port it listens on
	Client trackerv1.TrackerServiceClient // a client of it over Addr, as an origin

	calls sync.Map // full gRPC method -> *atomic.Int64
	stop  func()
}

// Options tune a tracker Start runs. The zero value is the tracker
// service's defaults, with the test's own etcd prefix (Prefix), a logger
// that discards and OriginToken as the origin credential. They are the
// kit's own, so the fixtures of other services need not know the
// tracker's configuration.
type Options struct {
	// LeaseTTL is how long a node that stopped heartbeating lingers in
	// Locate answers (0: the service's default).
	LeaseTTL time.Duration
	// PeerSharing lets cachenodes fetch from each other; without it a
	// cachenode is given origins only.
	PeerSharing bool
	// Logger receives the tracker's log (nil: discarded).
	Logger *slog.Logger
}

// OriginToken is the origin credential of the trackers Start runs: tests
// publish with it (AsOrigin).
const OriginToken = "trackertest-origin"

// AsOrigin is the dial option of a client that publishes to a tracker
// Start runs: it presents OriginToken.
func AsOrigin() grpc.DialOption {
	return nodeauth.WithTokens(nodeauth.OriginTokenHeader, OriginToken)
}

// Start runs a tracker over the etcd at endpoints on a free loopback port.
func Start(t testing.TB, endpoints []string, opts Options) *Tracker {
	t.Helper()
	return StartAt(t, "127.0.0.1:0", endpoints, opts)
}

// StartAt is Start listening on addr, so a test can bring a stopped
// tracker back on the same address.
func StartAt(t testing.TB, addr string, endpoints []string, opts Options) *Tracker {
	t.Helper()
	cfg := trackerserver.Config{
		Prefix:      Prefix(t),
		LeaseTTL:    opts.LeaseTTL,
		PeerSharing: opts.PeerSharing,
		Logger:      opts.Logger,
		OriginToken: OriginToken,
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv := trackerserver.New(Etcd(t, endpoints), cfg)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	tr := &Tracker{Addr: l.Addr().String()}
	gs := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		v, _ := tr.calls.LoadOrStore(info.FullMethod, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
		return h(ctx, req)
	}))
	trackerv1.RegisterTrackerServiceServer(gs, srv)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { srv.Run(ctx) })
	wg.Go(func() { gs.Serve(l) })
	conn, err := grpc.NewClient(tr.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()), nodeauth.WithTokens(nodeauth.OriginTokenHeader, cfg.OriginToken))
	if err != nil {
		t.Fatal(err)
	}
	tr.Client = trackerv1.NewTrackerServiceClient(conn)
	var once sync.Once
	tr.stop = func() {
		once.Do(func() {
			gs.Stop()
			cancel()
			wg.Wait()
		})
	}
	t.Cleanup(func() {
		conn.Close()
		tr.stop()
	})
	return tr
}

// Stop takes the tracker down (its etcd records stay).
func (tr *Tracker) Stop() { tr.stop() }

// Calls counts the unary calls of method (e.g. "Locate") it has served.
func (tr *Tracker) Calls(method string) int64 {
	v, ok := tr.calls.Load("/tracker.v1.TrackerService/" + method)
	if !ok {
		return 0
	}
	return v.(*atomic.Int64).Load()
}

// Etcd returns a client of the etcd at endpoints, closed when the test
// ends.
func Etcd(t testing.TB, endpoints []string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Prefix is the test's own part of a shared etcd.
func Prefix(t testing.TB) string {
	return "/test/" + strings.ReplaceAll(t.Name(), "/", "_") + "/"
}

// Ctx returns a context bounded for one test step.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Eventually polls cond until it holds, failing the test after a generous
// deadline.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	EventuallyOK(t, what, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}

// errNotYet is a condition of Eventually that does not hold yet.
var errNotYet = errors.New("timed out")

// EventuallyOK polls f until it returns nil, failing the test with f's
// last error after a generous deadline.
func EventuallyOK(t testing.TB, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Root is a deterministic file root for name.
func Root(name string) []byte {
	r := sha256.Sum256([]byte(name))
	return r[:]
}

// Have is a node's holdings of a file of n chunks: the chunks given.
func Have(root []byte, n int, chunks ...int) *trackerv1.Have {
	return &trackerv1.Have{Root: root, ChunkCount: uint32(n), Bitmap: bitmap.Of(n, chunks...).Encode()}
}
