// Command origin publishes the files of a media directory to the p2pd CDN:
// it builds each file's manifest, records it with the tracker and serves
// chunks over SPP to cachenodes.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	"github.com/p2pd/p2pd/internal/flagenv"
	"github.com/p2pd/p2pd/internal/manifest"
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

const usage = `origin — publishes a media directory to the p2pd CDN.

Every regular file under --media-dir is published under its path relative
to the directory (subdirectories allowed; hidden files and symlinks are
skipped). The directory is rescanned every --rescan: new files are
published, changed files get a new version, removed files are unpublished.

Usage: origin --media-dir DIR --tracker HOST:PORT [flags]
`

func main() {
	os.Exit(flagenv.Report(os.Stdout, os.Stderr, "origin", run(os.Args[1:])))
}

func run(args []string) error {
	fs := flagenv.NewFlagSet("origin")
	var (
		common    service.Common
		cfg       originserver.Config
		listen    string
		trackers  string
		chunkSize int
		tokenFile string
		originTok string
		traceURL  string
		tlsFlags  tlsconfig.Flags
	)
	fs.StringVar(&cfg.MediaDir, "media-dir", "", "directory of media files to publish (required)")
	fs.StringVar(&listen, "listen", ":7100", "address to serve SPP (gRPC) on")
	fs.StringVar(&cfg.Advertise, "advertise", "", "host:port other nodes dial for SPP (default: derived from --listen)")
	fs.StringVar(&cfg.NodeID, "node-id", "", "node id (default: origin@ADVERTISE)")
	fs.StringVar(&trackers, "tracker", "", "tracker address(es), comma-separated host:port (required)")
	fs.IntVar(&chunkSize, "chunk-size", manifest.DefaultChunkSize, "chunk size in bytes for newly published files")
	fs.DurationVar(&cfg.Rescan, "rescan", 0, "rescan the media directory this often (0: only at start)")
	fs.StringVar(&tokenFile, "admin-token-file", "", "file holding the admin API bearer token (default: $"+adminserver.TokenEnv+"; none: the API refuses every call)")
	fs.StringVar(&originTok, "origin-token-file", "", "file holding the origin credential the tracker demands to publish (default: $"+nodeauth.OriginTokenEnv+"; the same as the tracker's)")
	fs.StringVar(&traceURL, "trace-query-url", "", "Jaeger's query API (http://HOST:16686) the admin API reads a request's trace from, for the dashboard's trace view (empty: none)")
	common.Register(fs, "127.0.0.1:9090")
	tlsFlags.Register(fs)
	fs.Usage = flagenv.Usage(fs, usage)
	if err := flagenv.Parse(fs, args); err != nil {
		return err
	}
	if cfg.MediaDir == "" || trackers == "" {
		return flagenv.Usagef("--media-dir and --tracker are required")
	}
	cfg.ChunkSize = chunkSize
	log, err := common.Logger("origin")
	if err != nil {
		return err
	}
	creds, err := tlsFlags.Load()
	if err != nil {
		return err
	}
	ctx, stop := service.SignalContext()
	defer stop()

	l, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", listen, err)
	}
	if cfg.Advertise == "" {
		cfg.Advertise = service.HostPort(listen, l)
	}
	cfg.OpsAddr = service.OpsAddr(common.Ops, cfg.Advertise)
	ops := service.NewOps()
	origin, err := originserver.New(cfg, ops.Registry)
	if err != nil {
		return err
	}
	tel, err := telemetry.Setup(ctx, "origin", origin.Node().Id, log)
	if err != nil {
		return err
	}
	defer tel.Close() // flushes the spans of the last requests
	originToken, err := nodeauth.LoadToken(originTok, nodeauth.OriginTokenEnv, nil)
	if err != nil {
		return fmt.Errorf("--origin-token-file: %w", err)
	}
	tc, err := trackerclient.Dial(trackers, creds.DialOption(), nodeauth.WithTokens(nodeauth.OriginTokenHeader, originToken))
	if err != nil {
		return err
	}
	defer tc.Close()
	token, err := adminserver.LoadToken(tokenFile)
	if err != nil {
		return err
	}
	ops.AdminToken = token // pprof off loopback
	admin, err := adminserver.New(adminserver.Config{
		Token: token, MediaDir: cfg.MediaDir, ChunkSize: cfg.ChunkSize,
		Metrics: ops.Registry, OpsAddr: cfg.OpsAddr, TraceQueryURL: traceURL, Logger: log,
	}, origin, tc)
	if err != nil {
		return err
	}
	defer admin.Close()
	admin.Mount(ops.Mux)

	srv := grpc.NewServer(append(service.GRPCServerOptions(), creds.ServerOption())...)
	sppv1.RegisterChunkServiceServer(srv, origin)
	health := service.AddHealth(srv)

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return service.ServeGRPC(ctx, l, srv) })
	g.Go(func() error { return service.ServeOps(ctx, common.Ops, ops) })
	g.Go(func() error {
		if err := origin.Scan(ctx); err != nil {
			return err
		}
		member := tc.Join(ctx, origin.Node(), origin.Haves)
		defer member.Close()
		origin.Attach(ctx, tc, member)
		health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
		ops.SetReady(true)
		log.Info("origin ready", "listen", l.Addr().String(), "advertise", cfg.Advertise, "files", len(origin.Files()))
		origin.Run(ctx)
		return nil
	})
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
