package tlsconfig

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	"github.com/p2pd/p2pd/internal/tlsconfig/tlstest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// serveHealth runs a gRPC health server with creds on loopback.
func serveHealth(t *testing.T, creds *Creds) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(creds.ServerOption())
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return l.Addr().String()
}

func check(t *testing.T, addr string, opt grpc.DialOption) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

func mustCreds(t *testing.T, ca *tlstest.CA, name string, hosts ...string) *Creds {
	t.Helper()
	cert, key, err := ca.Issue(name, hosts...)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Flags{Cert: cert, Key: key, CA: ca.CAFile}.Load()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := tlstest.NewCA(dir, "cluster")
	if err != nil {
		t.Fatal(err)
	}
	rogueCA, err := tlstest.NewCA(dir, "rogue")
	if err != nil {
		t.Fatal(err)
	}
	server := mustCreds(t, ca, "server", "127.0.0.1")
	addr := serveHealth(t, server)

	expiredCert, expiredKey, _ := ca.IssueExpired("expired", "127.0.0.1")
	expired, err := New(expiredCert, expiredKey, ca.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	// A node with the cluster's CA but a certificate of the rogue one:
	// it trusts the server, the server does not trust it.
	rogueCert, rogueKey, _ := rogueCA.Issue("rogue-node", "127.0.0.1")
	rogue, err := New(rogueCert, rogueKey, ca.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opt  grpc.DialOption
		ok   bool
	}{
		{"valid certificate", mustCreds(t, ca, "client", "127.0.0.1").DialOption(), true},
		{"plaintext", (*Creds)(nil).DialOption(), false},
		{"certificate of another CA", rogue.DialOption(), false},
		{"expired certificate", expired.DialOption(), false},
		{"trusts another CA", mustCreds(t, rogueCA, "lost", "127.0.0.1").DialOption(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := check(t, addr, tc.opt)
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && status.Code(err) != codes.Unavailable {
				t.Fatalf("got %v, want the handshake to fail (Unavailable)", err)
			}
		})
	}

	t.Run("server named otherwise", func(t *testing.T) {
		wrong := serveHealth(t, mustCreds(t, ca, "elsewhere", "10.9.9.9", "elsewhere.example"))
		if err := check(t, wrong, mustCreds(t, ca, "client2", "127.0.0.1").DialOption()); status.Code(err) != codes.Unavailable {
			t.Fatalf("a server whose certificate does not name it: %v", err)
		}
	})
	t.Run("plaintext server", func(t *testing.T) {
		plain := serveHealth(t, nil)
		if err := check(t, plain, (*Creds)(nil).DialOption()); err != nil {
			t.Fatalf("plaintext both ends: %v", err)
		}
		if err := check(t, plain, mustCreds(t, ca, "client3", "127.0.0.1").DialOption()); err == nil {
			t.Fatal("a TLS client accepted a plaintext server")
		}
	})
}

func TestFlags(t *testing.T) {
	dir := t.TempDir()
	ca, _ := tlstest.NewCA(dir, "cluster")
	cert, key, _ := ca.Issue("node", "127.0.0.1")
	for _, tc := range []struct {
		name string
		f    Flags
		on   bool
		err  bool
	}{
		{"none", Flags{}, false, false},
		{"all", Flags{cert, key, ca.CAFile}, true, false},
		{"no CA", Flags{Cert: cert, Key: key}, false, true},
		{"only the CA", Flags{CA: ca.CAFile}, false, true},
		{"missing file", Flags{cert, key, dir + "/nope.pem"}, false, true},
		{"key of another cert", Flags{cert, ca.CAFile, ca.CAFile}, false, true},
		{"CA not PEM", Flags{cert, key, key + ".txt"}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "CA not PEM" {
				os.WriteFile(key+".txt", []byte("not pem"), 0o600)
			}
			c, err := tc.f.Load()
			if (err != nil) != tc.err || c.Enabled() != tc.on {
				t.Fatalf("Load: %v, enabled %v", err, c.Enabled())
			}
		})
	}
}

// TestKeyPairRotates: a rewritten certificate is picked up on the next
// check, and a half-written one keeps the last that worked.
func TestKeyPairRotates(t *testing.T) {
	dir := t.TempDir()
	ca, _ := tlstest.NewCA(dir, "cluster")
	cert, key, _ := ca.Issue("node", "127.0.0.1")
	kp := &keyPair{cert: cert, key: key}
	first, err := kp.get()
	if err != nil {
		t.Fatal(err)
	}
	ca.Issue("node", "127.0.0.1") // the same files, a new pair
	later := time.Now().Add(time.Minute)
	os.Chtimes(cert, later, later)
	kp.checked = time.Time{} // due for a check
	second, _ := kp.get()
	if second == first || string(second.Certificate[0]) == string(first.Certificate[0]) {
		t.Fatal("rotated certificate not picked up")
	}
	os.WriteFile(cert, []byte("half"), 0o600)
	much := time.Now().Add(2 * time.Minute)
	os.Chtimes(cert, much, much)
	kp.checked = time.Time{}
	if third, err := kp.get(); err != nil || third != second {
		t.Fatalf("a broken rewrite replaced the working pair: %v", err)
	}
}
