package portmux

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/p2pd/p2pd/internal/tlsconfig"
	"github.com/p2pd/p2pd/internal/tlsconfig/tlstest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestTLSGRPCAndHTTPShareAPort: nodes under mutual TLS open with a TLS
// handshake, which goes to the gRPC side; viewers' cleartext HTTP still
// reaches the HTTP side.
func TestTLSGRPCAndHTTPShareAPort(t *testing.T) {
	dir := t.TempDir()
	ca, err := tlstest.NewCA(dir, "cluster")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue("node", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	creds, err := tlsconfig.New(cert, key, ca.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := New(l)
	defer m.Close()
	gs := grpc.NewServer(creds.ServerOption())
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go gs.Serve(m.GRPC())
	defer gs.Stop()
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "http:"+r.URL.Path) })}
	go hs.Serve(m.HTTP())
	defer hs.Close()

	cc, err := grpc.NewClient(l.Addr().String(), creds.DialOption())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("gRPC over mutual TLS: %v", err)
	}
	resp, err := http.Get("http://" + l.Addr().String() + "/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "http:/x" {
		t.Fatalf("HTTP got %q", body)
	}
}
