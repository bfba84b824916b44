// Package origintest is the origin's test kit for the tests of other
// services: a real origin publishing a media directory, served over gRPC
// on loopback, so no other service's tests import originserver.
package origintest

import (
	"context"
	"net"
	"sync"
	"testing"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	"github.com/p2pd/p2pd/internal/service"
	"github.com/p2pd/p2pd/services/origin/originserver"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// Origin is a real origin serving SPP on loopback until the test ends or
// Stop is called.
type Origin struct {
	Server   *originserver.Server
	Registry *prometheus.Registry // its metrics
	Addr     string               // host:port it serves SPP on
	stop     func()
}

// Config is the origin a test wants.
type Config struct {
	MediaDir  string // published, every file in it
	ChunkSize int    // of the files it publishes; 0 for the default
	NodeID    string // "" for the default, origin@ADDR
}

// Start scans cfg.MediaDir, publishing every file in it, and serves the
// origin. It advertises the address it listens on.
func Start(t testing.TB, cfg Config) *Origin {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	o, err := originserver.New(originserver.Config{
		MediaDir: cfg.MediaDir, ChunkSize: cfg.ChunkSize, NodeID: cfg.NodeID, Advertise: l.Addr().String(),
	}, reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(service.GRPCServerOptions()...)
	sppv1.RegisterChunkServiceServer(gs, o)
	go gs.Serve(l)
	var once sync.Once
	stop := func() { once.Do(gs.Stop) }
	t.Cleanup(stop)
	return &Origin{Server: o, Registry: reg, Addr: l.Addr().String(), stop: stop}
}

// Stop stops serving: the origin is gone for its clients.
func (o *Origin) Stop() { o.stop() }
