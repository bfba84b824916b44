// Command rogue is the hostile node of issue 12, for tests: a process that
// merely reaches the tracker's port — no certificate, no token, on an
// open network — and tries every attack on the control plane, while it
// serves random bytes for the chunks of a file as a registered cachenode.
//
// The attacks, each with the refusal the tracker must answer:
//
//   - PublishFile of its own root under the attacked name (PermissionDenied)
//   - UnpublishFile of the name (PermissionDenied)
//   - Register as an origin (PermissionDenied)
//   - Register under each live node's id, replacing it (AlreadyExists)
//   - ReportRate as each live node (PermissionDenied)
//   - Unregister of every live node with lease ids swept around its own
//     (nothing to check in the answer: the tests look at the nodes after)
//   - failure reports about every live node as an unregistered stranger
//   - 200 fake registrations with nothing listening (fewer than 64 may
//     be accepted from one address)
//
// It then joins as a cachenode that announces the whole file and answers
// the tracker's health probe, so that it is ranked, and serves random
// bytes for every chunk asked of it. It prints one JSON report on stdout
// once the attacks are done (ok: every attack was refused as it must be),
// and serves until -serve has passed or it is stopped (SIGTERM, SIGINT).
// Whether the attacks changed anything — the name's root, the live nodes,
// the bytes viewers get — the test that runs it checks from outside: the
// e2e tests TestHostileNode (loopback) and TestComposeRogue (a container
// on the compose deployment's network).
//
// Usage:
//
//	rogue -tracker HOST:PORT -name NAME [flags]
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/bitmap"
	"github.com/p2pd/p2pd/internal/service"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// config is the command line.
type config struct {
	tracker string        // the tracker's gRPC address
	name    string        // the published name attacked
	from    string        // local IP to dial from and listen on; empty: any
	listen  string        // the rogue SPP server's listen address
	fakes   int           // fake registrations
	sweep   int           // lease ids tried either side of its own
	serve   time.Duration // how long to serve after the report; 0: until stopped
}

// attackTime bounds the attacks (some 2,000 calls with a dozen live
// nodes).
const attackTime = 2 * time.Minute

// attack is one attempt and what the tracker answered.
type attack struct {
	Name string `json:"name"`
	Got  string `json:"got"`
	Want string `json:"want"`
	OK   bool   `json:"ok"`
}

// report is what rogue prints.
type report struct {
	OK              bool     `json:"ok"`
	Addr            string   `json:"addr"`  // the rogue cachenode's advertised address
	Nodes           []string `json:"nodes"` // the live nodes it attacked
	Attacks         []attack `json:"attacks"`
	FakesAccepted   int      `json:"fakes_accepted"`
	FakesAttempted  int      `json:"fakes_attempted"`
	UnregisterCalls int      `json:"unregister_calls"`
	Errors          []string `json:"errors,omitempty"`
}

func main() {
	var c config
	fs := flag.NewFlagSet("rogue", flag.ContinueOnError)
	fs.StringVar(&c.tracker, "tracker", "", "the tracker's gRPC `address` (host:port)")
	fs.StringVar(&c.name, "name", "", "the published `name` to attack")
	fs.StringVar(&c.from, "from", "", "local `IP` to dial from and listen on (default: any)")
	fs.StringVar(&c.listen, "listen", ":0", "`address` of the rogue SPP server (its host is -from when set)")
	fs.IntVar(&c.fakes, "fakes", 200, "fake registrations with nothing listening")
	fs.IntVar(&c.sweep, "sweep", 100, "lease ids to try either side of its own, for every live node")
	fs.DurationVar(&c.serve, "serve", 0, "how long to go on serving after the report (0: until stopped)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if c.tracker == "" || c.name == "" {
		fmt.Fprintln(os.Stderr, "rogue: -tracker and -name are required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	rep, err := run(ctx, c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rogue:", err)
		os.Exit(1)
	}
	b, _ := json.Marshal(rep)
	fmt.Println(string(b))
	if c.serve > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(c.serve):
		}
	} else {
		<-ctx.Done()
	}
}

// run attacks and returns the report; the rogue server keeps running
// until ctx ends.
func run(ctx context.Context, c config) (*report, error) {
	target := strings.TrimPrefix(c.tracker, "dns:///")
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	if c.from != "" {
		dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(c.from)}
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return dialer.DialContext(ctx, "tcp", a) }))
	if err != nil {
		return nil, err
	}
	context.AfterFunc(ctx, func() { conn.Close() })
	x := trackerv1.NewTrackerServiceClient(conn)
	cctx, cancel := context.WithTimeout(ctx, attackTime)
	defer cancel()
	file, err := x.GetFile(cctx, &trackerv1.GetFileRequest{Name: c.name})
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", c.name, err)
	}
	nodes, err := x.ListNodes(cctx, &trackerv1.ListNodesRequest{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	rep := &report{}
	for _, n := range nodes.Nodes {
		rep.Nodes = append(rep.Nodes, n.Id)
	}

	// The rogue cachenode, reachable where the tracker reached us from.
	self := c.from
	if self == "" {
		probe, err := dialer.DialContext(cctx, "tcp", target)
		if err != nil {
			return nil, fmt.Errorf("find own address: %w", err)
		}
		self = probe.LocalAddr().(*net.TCPAddr).IP.String()
		probe.Close()
	}
	listen := c.listen
	if c.from != "" {
		_, port, err := net.SplitHostPort(listen)
		if err != nil {
			return nil, err
		}
		listen = net.JoinHostPort(c.from, port)
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	gs := grpc.NewServer()
	sppv1.RegisterChunkServiceServer(gs, garbage{f: file.File})
	service.AddHealth(gs)
	go gs.Serve(l)
	context.AfterFunc(ctx, gs.Stop)
	rep.Addr = net.JoinHostPort(self, fmt.Sprint(l.Addr().(*net.TCPAddr).Port))

	evil, err := x.Register(cctx, &trackerv1.RegisterRequest{Node: &trackerv1.Node{Id: "rogue", Role: trackerv1.Role_ROLE_CACHENODE, GrpcAddr: rep.Addr}})
	if err != nil {
		return nil, fmt.Errorf("join as a cachenode (an open network lets anyone): %w", err)
	}
	all := bitmap.New(int(file.File.ChunkCount))
	for i := range int(file.File.ChunkCount) {
		all.Set(i)
	}
	haves := []*trackerv1.Have{{Root: file.File.Root, ChunkCount: file.File.ChunkCount, Bitmap: all.Encode()}}
	if _, err := x.Announce(cctx, &trackerv1.AnnounceRequest{NodeId: "rogue", LeaseId: evil.LeaseId, Secret: evil.Secret, Haves: haves}); err != nil {
		return nil, fmt.Errorf("announce: %w", err)
	}
	// Stay registered while serving: heartbeat as a node does.
	go func() {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				x.Heartbeat(hctx, &trackerv1.HeartbeatRequest{NodeId: "rogue", LeaseId: evil.LeaseId, Secret: evil.Secret})
				cancel()
			}
		}
	}()

	fake := proto.Clone(file.File).(*trackerv1.File)
	fake.Root = make([]byte, 32)
	rand.Read(fake.Root)
	try := func(name string, want codes.Code, call func() error) {
		got := status.Code(call())
		rep.Attacks = append(rep.Attacks, attack{Name: name, Got: got.String(), Want: want.String(), OK: got == want})
	}
	try("publish its own root for "+c.name, codes.PermissionDenied, func() error {
		_, err := x.PublishFile(cctx, &trackerv1.PublishFileRequest{File: fake})
		return err
	})
	try("unpublish "+c.name, codes.PermissionDenied, func() error {
		_, err := x.UnpublishFile(cctx, &trackerv1.UnpublishFileRequest{Name: c.name})
		return err
	})
	try("register as an origin", codes.PermissionDenied, func() error {
		_, err := x.Register(cctx, &trackerv1.RegisterRequest{Node: &trackerv1.Node{Id: "rogue-origin", Role: trackerv1.Role_ROLE_ORIGIN, GrpcAddr: rep.Addr}})
		return err
	})
	for _, n := range nodes.Nodes {
		try("replace "+n.Id, codes.AlreadyExists, func() error {
			_, err := x.Register(cctx, &trackerv1.RegisterRequest{Node: &trackerv1.Node{Id: n.Id, Role: trackerv1.Role_ROLE_CACHENODE, GrpcAddr: rep.Addr}})
			return err
		})
		try("report rates as "+n.Id, codes.PermissionDenied, func() error {
			_, err := x.ReportRate(cctx, &trackerv1.ReportRateRequest{Reporter: n.Id, Samples: []*trackerv1.RateSample{{Source: nodes.Nodes[0].Id, Failed: true}}})
			return err
		})
	}
	// A sweep of lease ids around its own, for every live node, with its
	// own secret.
	for l := evil.LeaseId - int64(c.sweep); l <= evil.LeaseId+int64(c.sweep); l++ {
		for _, n := range nodes.Nodes {
			x.Unregister(cctx, &trackerv1.UnregisterRequest{NodeId: n.Id, LeaseId: l, Secret: evil.Secret})
			rep.UnregisterCalls++
		}
	}
	// Failure reports about every live node, as a stranger.
	for range 10 {
		for _, n := range nodes.Nodes {
			x.ReportRate(cctx, &trackerv1.ReportRateRequest{Reporter: "stranger", Samples: []*trackerv1.RateSample{{Source: n.Id, Failed: true}}})
		}
	}
	// Fake nodes with nothing listening.
	for i := range c.fakes {
		_, err := x.Register(cctx, &trackerv1.RegisterRequest{Node: &trackerv1.Node{Id: fmt.Sprintf("fake-%d", i), Role: trackerv1.Role_ROLE_CACHENODE, GrpcAddr: net.JoinHostPort(self, "1")}})
		rep.FakesAttempted++
		switch {
		case err == nil:
			rep.FakesAccepted++
		case status.Code(err) != codes.ResourceExhausted:
			rep.Errors = append(rep.Errors, fmt.Sprintf("fake registration %d: %v", i, err))
		}
	}
	rep.OK = len(rep.Errors) == 0 && rep.FakesAccepted < 64
	for _, a := range rep.Attacks {
		rep.OK = rep.OK && a.OK
	}
	if cctx.Err() != nil {
		return nil, fmt.Errorf("the attacks took longer than %v", attackTime)
	}
	return rep, nil
}

// garbage serves random bytes for every chunk asked of it.
type garbage struct {
	sppv1.UnimplementedChunkServiceServer
	f *trackerv1.File
}

func (g garbage) Fetch(req *sppv1.FetchRequest, s grpc.ServerStreamingServer[sppv1.FetchResponse]) error {
	for _, c := range req.Chunks {
		n := int64(g.f.ChunkSize)
		if last := int64(g.f.Size) - int64(c)*n; last < n {
			n = max(last, 0)
		}
		b := make([]byte, n)
		rand.Read(b)
		if err := s.Send(&sppv1.FetchResponse{Chunk: c, Data: b}); err != nil {
			return err
		}
	}
	return nil
}
