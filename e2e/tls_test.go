package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/tlsconfig"
	"github.com/p2pd/p2pd/internal/tlsconfig/tlstest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// pki is a cluster CA, a certificate for every node (one for all, naming
// every loopback address the tests use) and a rogue CA's certificate.
type pki struct {
	ca                  *tlstest.CA
	cert, key           string
	rogueCert, rogueKey string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	ca, err := tlstest.NewCA(dir, "cluster")
	if err != nil {
		t.Fatal(err)
	}
	rogue, err := tlstest.NewCA(dir, "rogue")
	if err != nil {
		t.Fatal(err)
	}
	var hosts []string
	for i := 1; i <= 60; i++ {
		hosts = append(hosts, fmt.Sprintf("127.0.0.%d", i))
	}
	p := &pki{ca: ca}
	if p.cert, p.key, err = ca.Issue("node", hosts...); err != nil {
		t.Fatal(err)
	}
	if p.rogueCert, p.rogueKey, err = rogue.Issue("intruder", hosts...); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *pki) args() []string {
	return []string{"--tls-cert", p.cert, "--tls-key", p.key, "--tls-ca", p.ca.CAFile}
}

// TestMutualTLS: with --tls-* on every service, the CDN works end to end;
// a node whose certificate another CA signed, or a node without TLS, can
// neither register with the tracker nor fetch a chunk.
func TestMutualTLS(t *testing.T) {
	p := newPKI(t)
	media := t.TempDir()
	data := randomFile(t, media, "films/secure.mp4", 6<<20+7)
	c := startCluster(t, media, clusterOpts{trackerArgs: p.args(), nodeArgs: p.args()})
	c.waitServed("films/secure.mp4")
	c.mustGet("films/secure.mp4", data)
	eventually(t, 30*time.Second, "the origin, the cachenode and the edge registered", func() error {
		if n := c.tracker.metric("p2pd_tracker_nodes", nil); n != 3 {
			return fmt.Errorf("%v nodes registered", n)
		}
		return nil
	})

	// Intruders: a cachenode with a certificate of another CA (trusting
	// ours), and one speaking plaintext.
	rogueArgs := []string{"--tls-cert", p.rogueCert, "--tls-key", p.rogueKey, "--tls-ca", p.ca.CAFile}
	for i, extra := range [][]string{rogueArgs, nil} {
		name := []string{"rogue", "plaintext"}[i]
		n := c.service(name, "cachenode", "127.0.0.9", append([]string{"--listen", freeAddr(t, "127.0.0.9"),
			"--tracker", c.trackerAddr, "--cache-dir", t.TempDir()}, extra...))
		eventually(t, 30*time.Second, name+" cachenode refused", func() error {
			b, _ := os.ReadFile(n.p.log)
			if !strings.Contains(string(b), "register failed") {
				return fmt.Errorf("no failed registration in its log yet")
			}
			return nil
		})
		if b, _ := os.ReadFile(n.p.log); strings.Contains(string(b), "tracker: registered") {
			t.Errorf("%s cachenode registered", name)
		}
	}
	if n := c.tracker.metric("p2pd_tracker_nodes", nil); n != 3 {
		t.Errorf("%v nodes registered after the intruders tried, want 3", n)
	}

	// The same at the protocol level, for every node's gRPC.
	rogue, err := tlsconfig.New(p.rogueCert, p.rogueKey, p.ca.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	good, err := tlsconfig.New(p.cert, p.key, p.ca.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	root := manifestRoot(t, listenAddr(c.origin), good.DialOption(), "films/secure.mp4")
	for _, tc := range []struct {
		name string
		opt  grpc.DialOption
		ok   bool
	}{
		{"valid certificate", good.DialOption(), true},
		{"certificate of another CA", rogue.DialOption(), false},
		{"plaintext", grpc.WithTransportCredentials(insecure.NewCredentials()), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, node := range []*daemon{c.origin, c.caches[0]} {
				err := fetchChunk(listenAddr(node), tc.opt, root)
				if tc.ok != (err == nil) {
					t.Errorf("Fetch from %s: %v", node.name, err)
				}
				if !tc.ok && status.Code(err) != codes.Unavailable {
					t.Errorf("Fetch from %s refused with %v, want a failed handshake", node.name, err)
				}
			}
			err := register(c.trackerAddr, tc.opt)
			if tc.ok != (err == nil) {
				t.Errorf("Register: %v", err)
			}
		})
	}
}

// TestMutualTLSP2PD: the single binary under mutual TLS — nodes' gRPC and
// viewers' HTTP still share one port, and a cache joins and serves.
func TestMutualTLSP2PD(t *testing.T) {
	p := newPKI(t)
	media := t.TempDir()
	data := randomFile(t, media, "film.mkv", 5<<20+3)
	hosts := []string{"127.0.0.50", "127.0.0.51", "127.0.0.52"}
	port := samePort(t, hosts...)
	server := startP2PD(t, "server", hosts[0], port, append([]string{"-i", "-p", media}, p.args()...)...)
	serverAddr := net.JoinHostPort(hosts[0], port)
	cache := startP2PD(t, "cache", hosts[1], port, append([]string{"-c", t.TempDir(), "-n", "-N", "-S", serverAddr}, p.args()...)...)
	waitP2PDServes(t, cache.url("film.mkv"), "")
	resp, body := viewerGet(t, cache.url("film.mkv"), "", nil)
	if resp.StatusCode != 200 || sum(body) != sum(data) {
		t.Fatalf("through a cache under mutual TLS: %d, byte-exact %v", resp.StatusCode, sum(body) == sum(data))
	}
	if n := metric(t, cache.ops(), "p2pd_cachenode_fetched_bytes_total", nil); n < float64(len(data)) {
		t.Fatalf("the cache fetched %v bytes over TLS", n)
	}
	// A cache without TLS cannot join this server: its first call (asking
	// the node it joins for the trackers) fails the handshake, and it
	// keeps trying without ever registering.
	plain := startP2PDUnready(t, "plain-cache", hosts[2], port, "-c", t.TempDir(), "-n", "-N", "-S", serverAddr)
	eventually(t, 30*time.Second, "plaintext cache refused", func() error {
		b, _ := os.ReadFile(plain.log)
		if !strings.Contains(string(b), "cannot learn the CDN from the node joined") && !strings.Contains(string(b), "register failed") {
			return fmt.Errorf("no refused join in its log yet")
		}
		return nil
	})
	if n := metric(t, server.ops(), "p2pd_tracker_nodes", nil); n != 2 {
		t.Errorf("%v nodes registered, want the server's origin and the TLS cache", n)
	}
}

// startP2PDUnready starts p2pd without waiting for it to be ready.
func startP2PDUnready(t *testing.T, name, host, port string, args ...string) *proc {
	t.Helper()
	return start(t, name, "p2pd", append(args, "-P", port, "-B", host)...)
}

// listenAddr returns the --listen address of a service.
func listenAddr(d *daemon) string {
	for i, a := range d.args {
		if a == "--listen" && i+1 < len(d.args) {
			return d.args[i+1]
		}
	}
	d.t.Fatalf("%s has no --listen", d.name)
	return ""
}

func dial(t *testing.T, addr string, opt grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// manifestRoot asks a node for a file's manifest by name.
func manifestRoot(t *testing.T, addr string, opt grpc.DialOption, name string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := sppv1.NewChunkServiceClient(dial(t, addr, opt)).GetManifest(ctx, &sppv1.GetManifestRequest{File: &sppv1.GetManifestRequest_Name{Name: name}})
	if err != nil {
		t.Fatalf("GetManifest with a valid certificate: %v", err)
	}
	return resp.Manifest.Root
}

// fetchChunk fetches chunk 0 of root from addr.
func fetchChunk(addr string, opt grpc.DialOption, root []byte) error {
	cc, err := grpc.NewClient(addr, opt)
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := sppv1.NewChunkServiceClient(cc).Fetch(ctx, &sppv1.FetchRequest{Root: root, Chunks: []uint32{0}, Requester: "test"})
	if err != nil {
		return err
	}
	_, err = stream.Recv()
	return err
}

// register registers a made-up cachenode and unregisters it at once.
func register(addr string, opt grpc.DialOption) error {
	cc, err := grpc.NewClient(addr, opt)
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tc := trackerv1.NewTrackerServiceClient(cc)
	node := &trackerv1.Node{Id: "intruder", Role: trackerv1.Role_ROLE_CACHENODE, GrpcAddr: "127.0.0.9:1"}
	resp, err := tc.Register(ctx, &trackerv1.RegisterRequest{Node: node})
	if err != nil {
		return err
	}
	_, err = tc.Unregister(ctx, &trackerv1.UnregisterRequest{NodeId: node.Id, LeaseId: resp.LeaseId, Secret: resp.Secret})
	return err
}
