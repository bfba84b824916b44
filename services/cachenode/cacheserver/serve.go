package cacheserver

import (
	"context"
	"errors"
	"fmt"
	"net"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	"github.com/p2pd/p2pd/internal/chunkstore"
	"github.com/p2pd/p2pd/internal/nodeauth"
	"github.com/p2pd/p2pd/internal/service"
	"github.com/p2pd/p2pd/internal/spp"
	"github.com/p2pd/p2pd/internal/telemetry"
	"github.com/p2pd/p2pd/internal/tlsconfig"
	"github.com/p2pd/p2pd/services/tracker/trackerclient"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Start opens the chunk store in dir (at most maxBytes), serves it as a
// cachenode on h and runs it in g until ctx ends. The node reaches the
// tracker through tc, which the caller closes after g is done.
func Start(ctx context.Context, g *errgroup.Group, h service.Host, cfg Config, dir string, maxBytes int64, tc *trackerclient.Client) (*Server, error) {
	store, err := chunkstore.Open(dir, maxBytes)
	if err != nil {
		return nil, err
	}
	s, err := New(cfg, store, tc, h.Pool, h.Ops.Registry)
	if err != nil {
		return nil, err
	}
	sppv1.RegisterChunkServiceServer(h.GRPC, s)
	g.Go(func() error { return s.Run(ctx) })
	return s, nil
}

// ProcessConfig is a standalone cachenode process, as its flags give it.
type ProcessConfig struct {
	Config          // the cachenode's; Logger is the process's
	Listen   string // SPP (gRPC) address
	Ops      string // ops listener address, empty for none
	Trackers string // comma-separated tracker addresses
	CacheDir string // the chunk store's directory
	MaxBytes int64  // the chunk store's bound
	// JoinToken is presented to the tracker to register (empty: none).
	JoinToken string
	TLS       *tlsconfig.Creds
}

// Serve runs a standalone cachenode until ctx ends: its SPP gRPC server
// with health service, its ops listener and its tracker membership.
func Serve(ctx context.Context, pc ProcessConfig) error {
	log := pc.Logger
	l, err := net.Listen("tcp", pc.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", pc.Listen, err)
	}
	if pc.Advertise == "" {
		pc.Advertise = service.HostPort(pc.Listen, l)
	}
	pc.OpsAddr = service.OpsAddr(pc.Ops, pc.Advertise)
	tc, err := trackerclient.Dial(pc.Trackers, pc.TLS.DialOption(), nodeauth.WithTokens(nodeauth.JoinTokenHeader, pc.JoinToken))
	if err != nil {
		return err
	}
	defer tc.Close()
	pool := spp.NewPool(append(service.GRPCDialOptions(), pc.TLS.DialOption())...)
	defer pool.Close()
	h := service.Host{GRPC: grpc.NewServer(append(service.GRPCServerOptions(), pc.TLS.ServerOption())...), Pool: pool, Ops: service.NewOps()}
	health := service.AddHealth(h.GRPC)

	id := pc.Config
	id.applyDefaults()
	tel, err := telemetry.Setup(ctx, "cachenode", id.NodeID, log)
	if err != nil {
		return err
	}
	defer tel.Close() // flushes the spans of the last requests
	g, gctx := errgroup.WithContext(ctx)
	cache, err := Start(gctx, g, h, pc.Config, pc.CacheDir, pc.MaxBytes, tc)
	if err != nil {
		return err
	}
	g.Go(func() error { return service.ServeGRPC(gctx, l, h.GRPC) })
	g.Go(func() error { return service.ServeOps(gctx, pc.Ops, h.Ops) })
	health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	h.Ops.SetReady(true)
	log.Info("cachenode ready", "listen", l.Addr().String(), "advertise", pc.Advertise,
		"cache_dir", pc.CacheDir, "max_bytes", pc.MaxBytes, "held_bytes", cache.store.Bytes(), "fetch", pc.FetchMisses)
	err = g.Wait()
	log.Info("cachenode stopped", "held_bytes", cache.store.Bytes())
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
