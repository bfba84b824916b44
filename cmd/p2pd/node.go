package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	discoveryv1 "github.com/p2pd/p2pd/gen/discovery/v1"
	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/buildinfo"
	"github.com/p2pd/p2pd/internal/chunkstore"
	"github.com/p2pd/p2pd/internal/connlimit"
	"github.com/p2pd/p2pd/internal/discovery"
	"github.com/p2pd/p2pd/internal/flagenv"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/nodeauth"
	"github.com/p2pd/p2pd/internal/portmux"
	"github.com/p2pd/p2pd/internal/rangeio"
	"github.com/p2pd/p2pd/internal/service"
	"github.com/p2pd/p2pd/internal/spp"
	"github.com/p2pd/p2pd/internal/telemetry"
	"github.com/p2pd/p2pd/internal/tlsconfig"
	"github.com/p2pd/p2pd/internal/webui"
	"github.com/p2pd/p2pd/services/cachenode/cacheserver"
	"github.com/p2pd/p2pd/services/edge/edgeserver"
	"github.com/p2pd/p2pd/services/origin/adminserver"
	"github.com/p2pd/p2pd/services/origin/originserver"
	"github.com/p2pd/p2pd/services/tracker/trackerclient"
	"github.com/p2pd/p2pd/services/tracker/trackerserver"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// node is one p2pd process: its port, split between viewers' HTTP and the
// nodes' gRPC, and the services composed on it.
type node struct {
	cfg    *config
	log    *slog.Logger
	mux    *portmux.Mux
	grpc   *grpc.Server
	health *health.Server
	ops    *service.Ops
	pool   *spp.Pool
	// self is where this process dials its own gRPC services.
	self string
	// advertise is where other nodes dial this one.
	advertise string
	// tracker is this node's tracker client (its own tracker on a server).
	tracker *trackerclient.Client
	// creds secure the nodes' gRPC (nil: plaintext).
	creds *tlsconfig.Creds
}

func newNode(cfg *config) (*node, error) {
	role := "server"
	if cfg.cache != "" {
		role = "cache"
	}
	log, err := cfg.common.Logger("p2pd-" + role)
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort(cfg.bind, strconv.Itoa(cfg.port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	n := &node{cfg: cfg, log: log, mux: portmux.New(l), ops: service.NewOps()}
	n.self = net.JoinHostPort(selfHost(cfg.bind), strconv.Itoa(cfg.port))
	n.advertise, err = advertiseAddr(cfg)
	if err != nil {
		l.Close()
		return nil, err
	}
	if n.creds, err = cfg.tls.Load(); err != nil {
		l.Close()
		return nil, err
	}
	n.pool = spp.NewPool(append(service.GRPCDialOptions(), n.creds.DialOption())...)
	n.grpc = grpc.NewServer(append(service.GRPCServerOptions(), n.creds.ServerOption())...)
	n.health = service.AddHealth(n.grpc)
	return n, nil
}

// selfHost is the host this process reaches its own listener on.
func selfHost(bind string) string {
	if ip := net.ParseIP(bind); bind == "" || (ip != nil && ip.IsUnspecified()) {
		return "127.0.0.1"
	}
	return bind
}

// advertiseAddr decides where other nodes reach this one: --advertise; else
// the -B address; else, for a cache, the local address it uses to reach
// its server (the one interface that surely routes there); else the first
// non-loopback interface address.
func advertiseAddr(cfg *config) (string, error) {
	port := strconv.Itoa(cfg.port)
	switch {
	case cfg.advertise != "":
		return cfg.advertise, nil
	case cfg.bind != "" && !net.ParseIP(cfg.bind).IsUnspecified():
		return net.JoinHostPort(cfg.bind, port), nil
	case cfg.server != "":
		c, err := net.DialTimeout("tcp", cfg.server, 10*time.Second)
		if err != nil {
			return "", fmt.Errorf("reach server %s to learn this node's address (or give --advertise): %w", cfg.server, err)
		}
		defer c.Close()
		host, _, _ := net.SplitHostPort(c.LocalAddr().String())
		return net.JoinHostPort(host, port), nil
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.IsGlobalUnicast() && ipn.IP.To4() != nil {
			return net.JoinHostPort(ipn.IP.String(), port), nil
		}
	}
	return net.JoinHostPort("127.0.0.1", port), nil
}

func (n *node) run() error {
	ctx, stop := service.SignalContext()
	defer stop()
	defer n.pool.Close()
	id := n.cfg.nodeID
	if id == "" {
		id = n.advertise
	}
	tel, err := telemetry.Setup(ctx, "p2pd", id, n.log)
	if err != nil {
		n.mux.Close()
		return err
	}
	defer tel.Close() // flushes the spans of the last requests
	g, ctx := errgroup.WithContext(ctx)
	var edge *edgeserver.Server
	if n.cfg.cache != "" {
		edge, err = n.startCache(ctx, g)
	} else {
		edge, err = n.startServer(ctx, g)
	}
	if err != nil {
		n.mux.Close()
		return err
	}
	defer edge.Close()
	viewers, err := n.cfg.cors.Handler(n.restrict(telemetry.HTTPHandler(webui.Player(webui.TrackerVideos(n.tracker), edge), "edge")))
	if err != nil {
		n.mux.Close()
		return err
	}
	access, err := n.cfg.accessLog.Open()
	if err != nil {
		n.mux.Close()
		return err
	}
	defer access.Close()
	httpSrv := service.NewHTTPServer(access.Handler(viewers))
	g.Go(func() error { return service.ServeGRPC(ctx, n.mux.GRPC(), n.grpc) })
	g.Go(func() error { return service.ServeHTTP(ctx, connlimit.Wrap(n.mux.HTTP(), n.cfg.limits), httpSrv) })
	g.Go(func() error { return service.ServeOps(ctx, n.cfg.common.Ops, n.ops) })
	n.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	n.ops.SetReady(true)
	n.log.Info("p2pd ready", "listen", n.mux.HTTP().Addr().String(), "advertise", n.advertise,
		"public", n.cfg.public, "host", n.cfg.host, "ops", n.cfg.common.Ops, "version", buildinfo.Read().Version)
	err = g.Wait()
	n.mux.Close()
	return err
}

// startServer composes scenario 1 and the top of scenario 3: embedded
// etcd, tracker, origin, and an edge reading from the origin.
func (n *node) startServer(ctx context.Context, g *errgroup.Group) (*edgeserver.Server, error) {
	dir := n.cfg.etcdDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "p2pd-etcd-")
		if err != nil {
			return nil, err
		}
		dir = tmp
		g.Go(func() error { <-ctx.Done(); return os.RemoveAll(tmp) })
	}
	et, err := trackerserver.OpenEtcd(ctx, trackerserver.EtcdConfig{
		EmbeddedDir:        dir,
		EmbeddedClientAddr: "127.0.0.1:0",
		EmbeddedPeerAddr:   "127.0.0.1:0",
	})
	if err != nil {
		return nil, err
	}
	g.Go(func() error { <-ctx.Done(); et.Close(); return nil })
	token, err := adminserver.LoadToken(n.cfg.adminTokenFile)
	if err != nil {
		return nil, err
	}
	n.ops.AdminToken = token
	join, err := nodeauth.LoadToken(n.cfg.joinTokenFile, nodeauth.JoinTokenEnv, nil)
	if err != nil {
		return nil, fmt.Errorf("--join-token-file: %w", err)
	}
	// The origin is in this process: its credential is made here and
	// never leaves it, so nothing outside may publish but the admin.
	originToken := nodeauth.NewSecret()
	tr := trackerserver.New(et.Client, trackerserver.Config{
		PeerSharing: n.cfg.loadSharing,
		// Caches are ranked once the tracker has reached them itself.
		ProbeNodes:       true,
		ProbeDialOptions: []grpc.DialOption{n.creds.DialOption()},
		OriginToken:      originToken,
		AdminToken:       token,
		JoinToken:        join,
		Logger:           n.log,
	})
	trackerv1.RegisterTrackerServiceServer(n.grpc, tr)
	n.ops.Registry.MustRegister(tr.Collectors()...)
	n.ops.Registry.MustRegister(et.Collectors()...)
	g.Go(func() error { return tr.Run(ctx) })

	rescan, err := time.ParseDuration(n.cfg.rescan)
	if err != nil {
		return nil, fmt.Errorf("--rescan %q: %w", n.cfg.rescan, err)
	}
	origin, err := originserver.New(originserver.Config{
		MediaDir:  n.cfg.publish,
		ChunkSize: n.cfg.chunkSize,
		NodeID:    n.cfg.nodeID,
		Advertise: n.advertise,
		HTTPAddr:  n.advertise,
		OpsAddr:   n.opsAddr(),
		Rescan:    rescan,
	}, n.ops.Registry)
	if err != nil {
		return nil, err
	}
	sppv1.RegisterChunkServiceServer(n.grpc, origin)
	// The top of the tree: caches joining here use this tracker.
	discoveryv1.RegisterDiscoveryServiceServer(n.grpc, discovery.NewServer(discovery.Info{
		Trackers: []string{n.advertise},
		Path:     []discovery.Node{{ID: origin.Node().Id, Addr: n.advertise, Origin: true}},
		Region:   n.cfg.region,
	}))
	if err := origin.Scan(ctx); err != nil {
		return nil, err
	}
	tc, err := trackerclient.Dial(n.self, n.creds.DialOption(), nodeauth.WithTokens(nodeauth.OriginTokenHeader, originToken))
	if err != nil {
		return nil, err
	}
	n.tracker = tc
	admin, err := adminserver.New(adminserver.Config{
		Token: token, MediaDir: n.cfg.publish, ChunkSize: n.cfg.chunkSize,
		Metrics: n.ops.Registry, OpsAddr: n.opsAddr(), TraceQueryURL: n.cfg.traceQueryURL, Logger: n.log,
	}, origin, tc)
	if err != nil {
		return nil, err
	}
	admin.Mount(n.ops.Mux)
	g.Go(func() error { <-ctx.Done(); return admin.Close() })
	g.Go(func() error {
		defer tc.Close()
		if err := tr.WaitReady(ctx); err != nil {
			return nil
		}
		member := tc.Join(ctx, origin.Node(), origin.Haves)
		defer member.Close()
		origin.Attach(ctx, tc, member)
		origin.Run(ctx)
		return nil
	})
	// A server has no cachenode: --memory-cache sizes its edge's memory
	// cache instead, the one copy of hot chunks in front of the origin.
	memory, err := memoryBytes(n.cfg.memoryCache)
	if err != nil {
		return nil, err
	}
	return edgeserver.New(edgeserver.Config{
		Tracker:          tc,
		Commands:         tc,
		Nodes:            n.pool,
		NodeID:           "edge@" + n.advertise,
		Upstream:         n.self,
		MemoryCacheBytes: memory,
		Registry:         n.ops.Registry,
		Logger:           n.log,
		TraceID:          telemetry.TraceID,
	})
}

// startCache composes a scenario-3 cache: a cachenode joined to the server
// given by -S, and an edge reading from it.
func (n *node) startCache(ctx context.Context, g *errgroup.Group) (*edgeserver.Server, error) {
	maxBytes, err := flagenv.ParseBytes(n.cfg.maxBytes)
	if err != nil {
		return nil, fmt.Errorf("--max-bytes: %w", err)
	}
	memory, err := memoryBytes(n.cfg.memoryCache)
	if err != nil {
		return nil, err
	}
	// A cache has no admin API; the token opens its pprof off loopback.
	if n.ops.AdminToken, err = adminserver.LoadToken(n.cfg.adminTokenFile); err != nil {
		return nil, err
	}
	store, err := chunkstore.Open(n.cfg.cache, maxBytes)
	if err != nil {
		return nil, err
	}
	info, parent, err := n.join(ctx)
	if err != nil {
		return nil, err
	}
	join, err := nodeauth.LoadToken(n.cfg.joinTokenFile, nodeauth.JoinTokenEnv, nil)
	if err != nil {
		return nil, fmt.Errorf("--join-token-file: %w", err)
	}
	tc, err := trackerclient.Dial(strings.Join(info.Trackers, ","), n.creds.DialOption(), nodeauth.WithTokens(nodeauth.JoinTokenHeader, join))
	if err != nil {
		return nil, err
	}
	n.tracker = tc
	var parents []cacheserver.Parent
	for _, p := range info.Parents() {
		parents = append(parents, cacheserver.Parent{ID: p.ID, Addr: p.Addr})
	}
	discoveryv1.RegisterDiscoveryServiceServer(n.grpc, discovery.NewServer(info))
	cache, err := cacheserver.New(cacheserver.Config{
		NodeID:           info.Path[0].ID,
		Region:           info.Region,
		Parent:           parent,
		Parents:          parents,
		Advertise:        n.advertise,
		HTTPAddr:         n.advertise,
		OpsAddr:          n.opsAddr(),
		FetchMisses:      n.cfg.fetch,
		MemoryCacheBytes: memory,
		Prefetch:         cmp.Or(n.cfg.prefetch, -1), // the config's 0 is "default"
		Logger:           n.log,
	}, store, tc, n.pool, n.ops.Registry)
	if err != nil {
		tc.Close()
		return nil, err
	}
	sppv1.RegisterChunkServiceServer(n.grpc, cache)
	g.Go(func() error {
		defer tc.Close()
		defer cache.Close()
		return cache.Run(ctx)
	})
	return edgeserver.New(edgeserver.Config{
		Tracker:  tc,
		Commands: tc,
		Nodes:    n.pool,
		NodeID:   "edge@" + n.advertise,
		Upstream: n.self,
		// Chunks come straight from the cachenode in this process: no
		// socket, no second digest; it keeps the hot ones in memory.
		Local: func(ctx context.Context, root manifest.Digest, first, last int) (rangeio.ChunkStream, error) {
			ls, err := cache.Stream(ctx, root, first, last)
			if err != nil {
				return nil, err
			}
			return ls, nil
		},
		Region:   info.Region,
		Registry: n.ops.Registry,
		Logger:   n.log,
		TraceID:  telemetry.TraceID,
	})
}

// join learns the CDN from the node named by -S (a server or a cache):
// this cache's place in the tree, its trackers and region, and the id of
// its parent. It waits for a parent that is starting too.
func (n *node) join(ctx context.Context) (discovery.Info, string, error) {
	conn, err := grpc.NewClient(n.cfg.server, append(service.GRPCDialOptions(), n.creds.DialOption())...)
	if err != nil {
		return discovery.Info{}, "", fmt.Errorf("dial %s: %w", n.cfg.server, err)
	}
	defer conn.Close()
	up, err := discovery.Learn(ctx, conn, n.cfg.server, n.log)
	if errors.Is(err, discovery.ErrNotServed) {
		// An older server: the top of the tree, and the tracker.
		n.log.Warn("the node joined serves no discovery; taking it for the server", "node", n.cfg.server)
		up = discovery.Info{Path: []discovery.Node{{ID: "origin@" + n.cfg.server, Addr: n.cfg.server, Origin: true}}}
		err = nil
	}
	if err != nil {
		return discovery.Info{}, "", err
	}
	// The cachenode's own default id, known before it exists.
	id := cmp.Or(n.cfg.nodeID, "cachenode@"+n.advertise)
	info, err := discovery.Child(up, n.cfg.server, discovery.Node{ID: id, Addr: n.advertise}, n.cfg.region)
	if err != nil {
		return discovery.Info{}, "", err
	}
	n.log.Info("joined the tree", "parent", up.Path[0].ID, "depth", len(info.Path)-1, "trackers", info.Trackers, "region", info.Region)
	return info, up.Path[0].ID, nil
}

// opsAddr is where other nodes reach this one's ops listener: the
// server's admin API reads every cache's counters there.
func (n *node) opsAddr() string { return service.OpsAddr(n.cfg.common.Ops, n.advertise) }

// memoryBytes parses --memory-cache: a size, or 0 to disable the cache.
func memoryBytes(v string) (int64, error) {
	b, err := flagenv.ParseCacheBytes(v)
	if err != nil {
		return 0, fmt.Errorf("--memory-cache: %w", err)
	}
	return b, nil
}

// restrict applies -N and -A to viewers' HTTP (never to gRPC between
// nodes, which the port mux routes elsewhere).
func (n *node) restrict(h http.Handler) http.Handler {
	if n.cfg.host != "" {
		h = hostOnly(n.cfg.host, h)
	}
	if !n.cfg.public {
		h = loopbackOnly(h)
	}
	return h
}
