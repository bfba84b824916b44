// Command cachenode is a p2pd cache: it keeps verified chunks on disk,
// serves them over SPP and fetches what it misses from the sources the
// tracker ranks (peer cachenodes, the origin).
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	"github.com/p2pd/p2pd/internal/chunkstore"
	"github.com/p2pd/p2pd/internal/flagenv"
	"github.com/p2pd/p2pd/internal/nodeauth"
	"github.com/p2pd/p2pd/internal/service"
	"github.com/p2pd/p2pd/internal/spp"
	"github.com/p2pd/p2pd/internal/telemetry"
	"github.com/p2pd/p2pd/internal/tlsconfig"
	"github.com/p2pd/p2pd/services/cachenode/cacheserver"
	"github.com/p2pd/p2pd/services/tracker/trackerclient"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

const usage = `cachenode — a p2pd cache node.

Keeps verified chunks in --cache-dir (at most --max-bytes, least recently
used evicted first; kept across restarts), serves them over SPP and, with
--fetch, fetches the chunks it misses from peer cachenodes or the origin,
as ranked by the tracker. Every chunk is verified against its digest
before it is stored and again before it is served.

Usage: cachenode --cache-dir DIR --tracker HOST:PORT [flags]
`

func main() {
	os.Exit(flagenv.Report(os.Stdout, os.Stderr, "cachenode", run(os.Args[1:])))
}

func run(args []string) error {
	fs := flagenv.NewFlagSet("cachenode")
	var (
		common   service.Common
		cfg      cacheserver.Config
		listen   string
		trackers string
		cacheDir string
		maxBytes = flagenv.Bytes(10 << 30)
		memory   = flagenv.CacheBytes(256 << 20)
		tlsFlags tlsconfig.Flags
		joinFile string
	)
	fs.StringVar(&listen, "listen", ":7200", "address to serve SPP (gRPC) on")
	fs.StringVar(&cfg.Advertise, "advertise", "", "host:port other nodes dial for SPP (default: derived from --listen)")
	fs.StringVar(&cfg.NodeID, "node-id", "", "node id (default: cachenode@ADVERTISE)")
	fs.StringVar(&cfg.Region, "region", "", "region label: near peers share it, and only a shield fetches from outside it (env P2PD_REGION)")
	fs.BoolVar(&cfg.Shield, "shield", false, "a gateway of the region: the region's misses come through its shields (none: a node of the region is elected per chunk)")
	fs.StringVar(&trackers, "tracker", "", "tracker address(es), comma-separated host:port (required)")
	fs.StringVar(&cacheDir, "cache-dir", "", "directory of the chunk store (required)")
	fs.Var(&maxBytes, "max-bytes", "most chunk bytes to keep: a `size` in bytes, or with a K, M, G or T suffix (powers of 1024)")
	fs.BoolVar(&cfg.FetchMisses, "fetch", true, "fetch chunks not held from other nodes (false: serve only what is held)")
	fs.Var(&memory, "memory-cache", "verified chunks kept in memory in front of the store, served with no disk read and no second digest: a `size`, 0 for none")
	fs.IntVar(&cfg.Prefetch, "prefetch", 16, "chunks fetched ahead of sequential playback, past the end of the viewer's request (0: none)")
	fs.StringVar(&joinFile, "join-token-file", "", "file holding the join token the tracker demands to register (default: $"+nodeauth.JoinTokenEnv+")")
	common.Register(fs, "127.0.0.1:9092")
	tlsFlags.Register(fs)
	fs.Usage = flagenv.Usage(fs, usage)
	if err := flagenv.Parse(fs, args); err != nil {
		return err
	}
	if cacheDir == "" || trackers == "" {
		return flagenv.Usagef("--cache-dir and --tracker are required")
	}
	log, err := common.Logger("cachenode")
	if err != nil {
		return err
	}
	cfg.Logger = log
	tlsCreds, err := tlsFlags.Load()
	if err != nil {
		return err
	}
	cfg.MemoryCacheBytes = int64(memory)
	if cfg.Prefetch == 0 {
		cfg.Prefetch = -1 // the config's "none"
	}
	ctx, stop := service.SignalContext()
	defer stop()

	store, err := chunkstore.Open(cacheDir, int64(maxBytes))
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", listen, err)
	}
	if cfg.Advertise == "" {
		cfg.Advertise = service.HostPort(listen, l)
	}
	cfg.OpsAddr = service.OpsAddr(common.Ops, cfg.Advertise)
	creds := tlsCreds.DialOption()
	join, err := nodeauth.LoadToken(joinFile, nodeauth.JoinTokenEnv, nil)
	if err != nil {
		return fmt.Errorf("--join-token-file: %w", err)
	}
	tc, err := trackerclient.Dial(trackers, creds, nodeauth.WithTokens(nodeauth.JoinTokenHeader, join))
	if err != nil {
		return err
	}
	defer tc.Close()
	pool := spp.NewPool(append(service.GRPCDialOptions(), creds)...)
	defer pool.Close()

	ops := service.NewOps()
	cache, err := cacheserver.New(cfg, store, tc, pool, ops.Registry)
	if err != nil {
		return err
	}
	tel, err := telemetry.Setup(ctx, "cachenode", cache.Node().Id, log)
	if err != nil {
		return err
	}
	defer tel.Close() // flushes the spans of the last requests
	srv := grpc.NewServer(append(service.GRPCServerOptions(), tlsCreds.ServerOption())...)
	sppv1.RegisterChunkServiceServer(srv, cache)
	health := service.AddHealth(srv)

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return service.ServeGRPC(ctx, l, srv) })
	g.Go(func() error { return service.ServeOps(ctx, common.Ops, ops) })
	g.Go(func() error { return cache.Run(ctx) })
	health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	ops.SetReady(true)
	log.Info("cachenode ready", "listen", l.Addr().String(), "advertise", cfg.Advertise,
		"cache_dir", cacheDir, "max_bytes", int64(maxBytes), "held_bytes", store.Bytes(), "fetch", cfg.FetchMisses)
	err = g.Wait()
	log.Info("cachenode stopped", "held_bytes", store.Bytes())
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
