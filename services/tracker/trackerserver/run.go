package trackerserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/etcdembed"
	"github.com/p2pd/p2pd/internal/service"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// Etcd is the tracker's connection to etcd, and the member itself when it
// is embedded in this process.
type Etcd struct {
	// Client talks to the cluster (or the embedded member).
	Client  *clientv3.Client
	member  *etcdembed.Etcd
	metrics *etcdMetrics
}

// OpenEtcd connects to the etcd cfg names, starting the embedded member
// first when cfg.EmbeddedDir is set. The client connects lazily: an
// external cluster that is down is retried by the tracker's index.
func OpenEtcd(ctx context.Context, cfg EtcdConfig) (*Etcd, error) {
	cfg.applyDefaults()
	switch {
	case len(cfg.Endpoints) > 0 && cfg.EmbeddedDir != "":
		return nil, errors.New("etcd: give either endpoints of an external cluster or a directory for an embedded one, not both")
	case len(cfg.Endpoints) == 0 && cfg.EmbeddedDir == "":
		return nil, errors.New("etcd: give endpoints of an external cluster or a directory for an embedded one")
	}
	e := &Etcd{metrics: newEtcdMetrics()}
	endpoints := cfg.Endpoints
	if cfg.EmbeddedDir != "" {
		sctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
		m, err := etcdembed.Start(sctx, cfg.EmbeddedDir, cfg.EmbeddedClientAddr, cfg.EmbeddedPeerAddr)
		cancel()
		if err != nil {
			return nil, err
		}
		e.member = m
		endpoints = m.Endpoints()
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		// Notice a dead etcd connection without waiting for a request.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		// Every failure the client meets reaches us as an error; its own
		// logs would only repeat them.
		Logger:      zap.NewNop(),
		DialOptions: e.metrics.dialOptions(),
	})
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("etcd client for %v: %w", endpoints, err)
	}
	e.Client = cli
	return e, nil
}

// Collectors returns the Prometheus collectors timing the client's etcd
// requests.
func (e *Etcd) Collectors() []prometheus.Collector { return e.metrics.collectors() }

// Err reports a fatal error of the embedded member; nil channel (never
// ready) for an external cluster.
func (e *Etcd) Err() <-chan error {
	if e.member == nil {
		return nil
	}
	return e.member.Err()
}

// Close closes the client, then stops the embedded member if any.
func (e *Etcd) Close() {
	if e.Client != nil {
		e.Client.Close()
	}
	if e.member != nil {
		e.member.Close()
	}
}

// Collectors returns Prometheus collectors for the tracker's view of the
// CDN: live nodes, published files and holdings records.
func (s *Server) Collectors() []prometheus.Collector {
	gauge := func(name, help string, f func(*state) int) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
			var n int
			s.idx.read(func(st *state) { n = f(st) })
			return float64(n)
		})
	}
	return []prometheus.Collector{
		gauge("p2pd_tracker_nodes", "Live nodes in the tracker's index.", func(st *state) int { return len(st.nodes) }),
		gauge("p2pd_tracker_files", "Published files in the tracker's index.", func(st *state) int { return len(st.files) }),
		gauge("p2pd_tracker_holdings", "(file, node) holdings records in the tracker's index.", func(st *state) int {
			n := 0
			for _, byNode := range st.have {
				n += len(byNode)
			}
			return n
		}),
	}
}

// ServeConfig is a standalone tracker process.
type ServeConfig struct {
	// Listen is the gRPC address; ignored when Listener is set.
	Listen string
	// Listener, when set, is served instead of listening on Listen.
	Listener net.Listener
	// Ops is the ops listener's address; empty disables it.
	Ops string
	// Etcd says where the state lives.
	Etcd EtcdConfig
	// Tracker tunes the tracker.
	Tracker Config
	// ServerOptions are added to service.GRPCServerOptions().
	ServerOptions []grpc.ServerOption
}

// Serve runs a tracker until ctx ends: etcd (embedded or external), the
// gRPC tracker and health services, and the ops listener. The health
// service and /readyz report serving once the index is loaded.
func Serve(ctx context.Context, cfg ServeConfig) error {
	if cfg.Tracker.Logger == nil {
		cfg.Tracker.Logger = slog.Default()
	}
	log := cfg.Tracker.Logger
	l := cfg.Listener
	if l == nil {
		if cfg.Listen == "" {
			cfg.Listen = ":7000"
		}
		var err error
		if l, err = net.Listen("tcp", cfg.Listen); err != nil {
			return fmt.Errorf("tracker listen %s: %w", cfg.Listen, err)
		}
	}
	defer l.Close()
	et, err := OpenEtcd(ctx, cfg.Etcd)
	if err != nil {
		return err
	}
	defer et.Close()

	tr := New(et.Client, cfg.Tracker)
	gs := grpc.NewServer(append(service.GRPCServerOptions(), append(cfg.ServerOptions, grpc.ChainUnaryInterceptor(logCalls(log)))...)...)
	trackerv1.RegisterTrackerServiceServer(gs, tr)
	health := service.AddHealth(gs)
	health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	ops := service.NewOps()
	ops.Registry.MustRegister(tr.Collectors()...)
	ops.Registry.MustRegister(et.Collectors()...)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	wg.Go(func() { tr.Run(ctx) })
	wg.Go(func() {
		if tr.WaitReady(ctx) == nil {
			health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			ops.SetReady(true)
			log.Info("tracker ready", "listen", l.Addr().String())
		}
	})
	wg.Go(func() { errc <- service.ServeGRPC(ctx, l, gs) })
	wg.Go(func() { errc <- service.ServeOps(ctx, cfg.Ops, ops) })
	if ch := et.Err(); ch != nil {
		wg.Go(func() {
			select {
			case err := <-ch:
				errc <- fmt.Errorf("embedded etcd: %w", err)
			case <-ctx.Done():
			}
		})
	}
	var first error
	select {
	case first = <-errc:
	case <-ctx.Done():
	}
	health.Shutdown()
	ops.SetReady(false)
	cancel()
	wg.Wait()
	return first
}

// logCalls logs each tracker call: failures at info (a node's retries are
// worth seeing), successes at debug (heartbeats and Locates are constant).
func logCalls(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		lvl := slog.LevelDebug
		if err != nil {
			lvl = slog.LevelInfo
		}
		if log.Enabled(ctx, lvl) {
			log.Log(ctx, lvl, "tracker call", "method", info.FullMethod, "code", status.Code(err).String(), "dur", time.Since(start), "err", err)
		}
		return resp, err
	}
}
