// Package originrun wires an origin process: the origin (originserver)
// serving SPP and publishing into the tracker, and the admin API
// (adminserver) on its ops listener. The origin binary's Serve and
// cmd/p2pd's server both compose Start.
package originrun

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	"github.com/p2pd/p2pd/internal/nodeauth"
	"github.com/p2pd/p2pd/internal/service"
	"github.com/p2pd/p2pd/internal/telemetry"
	"github.com/p2pd/p2pd/internal/tlsconfig"
	"github.com/p2pd/p2pd/services/origin/adminserver"
	"github.com/p2pd/p2pd/services/origin/originserver"
	"github.com/p2pd/p2pd/services/tracker/trackerclient"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Config is an origin and its admin API.
type Config struct {
	Origin     originserver.Config
	AdminToken string // empty disables the admin API
	// TraceQueryURL is Jaeger's query API the admin API reads a request's
	// trace from (empty: none).
	TraceQueryURL string
	Logger        *slog.Logger
	// BeforeJoin, if set, is waited for before the origin joins the
	// tracker (a tracker in the same process must have loaded its index).
	BeforeJoin func(context.Context) error
	// Ready, if set, is called once the first scan is published.
	Ready func(*originserver.Server)
	// ScanFirst makes Start scan the media directory before it returns
	// (a p2pd server is ready only once its files are published); else
	// the first scan runs in the background while the listeners start.
	ScanFirst bool
}

// Start publishes cfg.Origin.MediaDir on h and runs the origin in g until
// ctx ends: it scans the media directory, joins the tracker through tc
// (which the caller closes after g is done) and rescans. The admin API is
// mounted on h's ops listener.
func Start(ctx context.Context, g *errgroup.Group, h service.Host, cfg Config, tc *trackerclient.Client) (*originserver.Server, error) {
	origin, err := originserver.New(cfg.Origin, h.Ops.Registry)
	if err != nil {
		return nil, err
	}
	admin, err := adminserver.New(adminserver.Config{
		Token: cfg.AdminToken, MediaDir: cfg.Origin.MediaDir, ChunkSize: cfg.Origin.ChunkSize,
		Metrics: h.Ops.Registry, OpsAddr: cfg.Origin.OpsAddr, TraceQueryURL: cfg.TraceQueryURL, Logger: cfg.Logger,
	}, origin, tc)
	if err != nil {
		return nil, err
	}
	sppv1.RegisterChunkServiceServer(h.GRPC, origin)
	if cfg.ScanFirst {
		if err := origin.Scan(ctx); err != nil {
			admin.Close()
			return nil, err
		}
	}
	admin.Mount(h.Ops.Mux)
	g.Go(func() error {
		defer admin.Close()
		if !cfg.ScanFirst {
			if err := origin.Scan(ctx); err != nil {
				return err
			}
		}
		if cfg.BeforeJoin != nil {
			if err := cfg.BeforeJoin(ctx); err != nil {
				return nil // ctx ended first
			}
		}
		member := tc.Join(ctx, origin.Node(), origin.Haves)
		defer member.Close()
		origin.Attach(ctx, tc, member)
		if cfg.Ready != nil {
			cfg.Ready(origin)
		}
		origin.Run(ctx)
		return nil
	})
	return origin, nil
}

// ProcessConfig is a standalone origin process, as its flags give it.
type ProcessConfig struct {
	Config
	Listen   string // SPP (gRPC) address
	Ops      string // ops listener address, empty for none
	Trackers string // comma-separated tracker addresses
	TLS      *tlsconfig.Creds
	// OriginToken is the credential the tracker demands to publish.
	OriginToken string
}

// Serve runs a standalone origin until ctx ends: its SPP gRPC server with
// health service, and its ops listener with the admin API.
func Serve(ctx context.Context, pc ProcessConfig) error {
	log := pc.Logger
	l, err := net.Listen("tcp", pc.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", pc.Listen, err)
	}
	if pc.Origin.Advertise == "" {
		pc.Origin.Advertise = service.HostPort(pc.Listen, l)
	}
	pc.Origin.OpsAddr = service.OpsAddr(pc.Ops, pc.Origin.Advertise)
	tel, err := telemetry.Setup(ctx, "origin", pc.Origin.ID(), log)
	if err != nil {
		return err
	}
	defer tel.Close() // flushes the spans of the last requests
	tc, err := trackerclient.Dial(pc.Trackers, pc.TLS.DialOption(), nodeauth.WithTokens(nodeauth.OriginTokenHeader, pc.OriginToken))
	if err != nil {
		return err
	}
	defer tc.Close()
	h := service.Host{GRPC: grpc.NewServer(append(service.GRPCServerOptions(), pc.TLS.ServerOption())...), Ops: service.NewOps()}
	h.Ops.AdminToken = pc.AdminToken // pprof off loopback
	health := service.AddHealth(h.GRPC)
	pc.Ready = func(o *originserver.Server) {
		health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
		h.Ops.SetReady(true)
		log.Info("origin ready", "listen", l.Addr().String(), "advertise", pc.Origin.Advertise, "files", len(o.Files()))
	}
	g, gctx := errgroup.WithContext(ctx)
	if _, err := Start(gctx, g, h, pc.Config, tc); err != nil {
		return err
	}
	g.Go(func() error { return service.ServeGRPC(gctx, l, h.GRPC) })
	g.Go(func() error { return service.ServeOps(gctx, pc.Ops, h.Ops) })
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
