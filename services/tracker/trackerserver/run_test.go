package trackerserver

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func TestOpenEtcdConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  EtcdConfig
		want string
	}{
		{"neither", EtcdConfig{}, "give endpoints"},
		{"both", EtcdConfig{Endpoints: []string{"127.0.0.1:2379"}, EmbeddedDir: t.TempDir()}, "not both"},
		{"bad embedded address", EtcdConfig{EmbeddedDir: t.TempDir(), EmbeddedClientAddr: "nope"}, "client address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := OpenEtcd(testCtx(t), tt.cfg)
			if err == nil {
				e.Close()
				t.Fatal("OpenEtcd succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

// Serve runs a whole tracker with an embedded etcd: it reports serving once
// ready, answers, and stops cleanly when its context ends.
func TestServeEmbedded(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ServeConfig{
			Listener: l,
			Etcd:     EtcdConfig{EmbeddedDir: t.TempDir(), EmbeddedClientAddr: "127.0.0.1:0", EmbeddedPeerAddr: "127.0.0.1:0"},
			Tracker:  Config{Logger: discard()},
		})
	}()
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	eventually(t, "tracker to serve", func() bool {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		defer ccancel()
		resp, err := health.Check(cctx, &healthpb.HealthCheckRequest{})
		return err == nil && resp.Status == healthpb.HealthCheckResponse_SERVING
	})
	c := trackerv1.NewTrackerServiceClient(conn)
	register(t, c, "cache-1", cachenode)
	if got := nodeIDs(t, c); len(got) != 1 {
		t.Errorf("nodes = %v", got)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}
