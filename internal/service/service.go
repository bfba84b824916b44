// Package service is the plumbing every p2pd process shares: logging,
// the ops listener (/metrics, /healthz, /readyz, /debug/pprof/), gRPC
// servers with the health service, and graceful shutdown on SIGTERM.
package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/p2pd/p2pd/internal/buildinfo"
	"github.com/p2pd/p2pd/internal/spp"
	"github.com/p2pd/p2pd/internal/telemetry"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
)

// Common holds the flags every service has.
type Common struct {
	Ops      string
	LogLevel string
	LogJSON  bool
}

// Register adds the common flags to fs with opsDefault as the ops address.
func (c *Common) Register(fs *flag.FlagSet, opsDefault string) {
	fs.StringVar(&c.Ops, "ops", opsDefault, "address of the ops listener (/metrics, /healthz, /readyz, /debug/pprof/); empty disables it")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.BoolVar(&c.LogJSON, "log-json", false, "log JSON lines instead of text")
}

// Logger builds the process logger and makes it the slog default.
func (c *Common) Logger(service string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", c.LogLevel, err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, opts)
	if c.LogJSON {
		h = slog.NewJSONHandler(os.Stderr, opts)
	}
	l := slog.New(h).With("service", service)
	slog.SetDefault(l)
	return l, nil
}

// SignalContext returns a context cancelled on SIGINT or SIGTERM.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// Ops is the ops listener's mux with readiness state and a metrics registry.
type Ops struct {
	Mux      *http.ServeMux
	Registry *prometheus.Registry
	// AdminToken, when set, opens /debug/pprof/ on an ops listener that
	// is not on loopback to requests bearing it; without it pprof answers
	// loopback listeners only (see ServeOps).
	AdminToken string
	ready      atomic.Bool
}

// NewOps creates the ops mux with metrics, health, readiness and pprof.
func NewOps() *Ops {
	o := &Ops{Mux: http.NewServeMux(), Registry: prometheus.NewRegistry()}
	o.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.Collector())
	o.Mux.Handle("/metrics", promhttp.HandlerFor(o.Registry, promhttp.HandlerOpts{Registry: o.Registry}))
	o.Mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	o.Mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !o.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	o.Mux.HandleFunc("/debug/pprof/", pprof.Index)
	o.Mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	o.Mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	o.Mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	o.Mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return o
}

// SetReady flips /readyz.
func (o *Ops) SetReady(v bool) { o.ready.Store(v) }

// ReadHeaderTimeout is how long a viewer's connection may take to send
// its request header, from the moment it is accepted: a client that
// connects and sends nothing is closed after it (with no answer), so
// idle sockets cannot pile up.
const ReadHeaderTimeout = 10 * time.Second

// NewHTTPServer returns an http.Server with the timeouts every p2pd
// listener needs so slow or idle clients cannot pin resources.
func NewHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}

// ServeHTTP serves h on l until ctx ends, then shuts down gracefully.
func ServeHTTP(ctx context.Context, l net.Listener, srv *http.Server) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ServeOps runs the ops listener on addr until ctx ends. An empty addr
// disables it. The listener is optional: when addr cannot be bound (a
// second node on the machine took the port) it logs a warning and the
// process goes on without it. Off loopback, pprof (which can stall the
// process and reads its memory) needs o.AdminToken.
func ServeOps(ctx context.Context, addr string, o *Ops) error {
	if addr == "" {
		<-ctx.Done()
		return nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		slog.Warn("ops listener disabled: /metrics, /healthz, /readyz and the admin API are not served (set --ops to a free address)",
			"ops", addr, "err", err)
		<-ctx.Done()
		return nil
	}
	var h http.Handler = o.Mux
	if host, _, _ := net.SplitHostPort(l.Addr().String()); !isLoopback(host) {
		h = guardPprof(o.AdminToken, o.Mux)
	}
	return ServeHTTP(ctx, l, NewHTTPServer(h))
}

// GRPCServerOptions are the server options for bulk chunk transfer: large
// flow-control windows so one stream can fill a fast link. Every RPC is
// traced (OpenTelemetry, continuing the caller's trace).
func GRPCServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		telemetry.GRPCServerOption(),
		// A client may not hold more than this many streams open on one
		// connection, nor ping to keep a connection busy: a hostile peer
		// cannot pin unbounded goroutines and buffers. A connection whose
		// peer stopped answering is closed after Time+Timeout.
		grpc.MaxConcurrentStreams(4096),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, MaxConnectionIdle: 10 * time.Minute}),
		grpc.InitialWindowSize(4 << 20),
		grpc.InitialConnWindowSize(16 << 20),
		grpc.MaxRecvMsgSize(8 << 20),
		grpc.WriteBufferSize(256 << 10),
		grpc.ReadBufferSize(256 << 10),
		// Chunk messages: decoded in one copy, buffers not zeroed.
		grpc.ForceServerCodecV2(spp.Codec()),
		experimental.BufferPool(spp.Buffers),
	}
}

// GRPCDialOptions match GRPCServerOptions on the client side, tracing
// included.
func GRPCDialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		telemetry.GRPCDialOption(),
		grpc.WithInitialWindowSize(4 << 20),
		grpc.WithInitialConnWindowSize(16 << 20),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(8 << 20)),
		grpc.WithWriteBufferSize(256 << 10),
		grpc.WithReadBufferSize(256 << 10),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(spp.Codec())),
		experimental.WithBufferPool(spp.Buffers),
		ReconnectQuickly(),
	}
}

// ReconnectQuickly replaces gRPC's reconnect backoff (1 s doubling to
// 2 minutes) with one capped at 3 s: a node restarted by its supervisor
// is used again within seconds, instead of every call to it failing at
// once ("connection refused" replayed from the last attempt) for up to
// two minutes. A connection attempt to a host that does not answer (a
// partition) is given 5 s.
func ReconnectQuickly() grpc.DialOption {
	return grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second},
		MinConnectTimeout: 5 * time.Second,
	})
}

// AddHealth registers the gRPC health service on s and returns it so the
// caller can flip serving status.
func AddHealth(s *grpc.Server) *health.Server {
	h := health.NewServer()
	healthpb.RegisterHealthServer(s, h)
	return h
}

// ServeGRPC serves s on l until ctx ends, then stops gracefully (forcibly
// after a grace period, since chunk streams can be long).
func ServeGRPC(ctx context.Context, l net.Listener, s *grpc.Server) error {
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	done := make(chan struct{})
	go func() { s.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.Stop()
	}
	return nil
}

// HostPort normalises a listen address into one other nodes can dial. An
// empty or unspecified host becomes this machine's host name when that
// resolves to an address other than loopback (in a container: the name
// the other containers reach it by, valid even if its address changes),
// and 127.0.0.1 otherwise.
func HostPort(listen string, l net.Listener) string {
	host, _, err := net.SplitHostPort(listen)
	_, port, _ := net.SplitHostPort(l.Addr().String())
	if err != nil || host == "" || host == "0.0.0.0" || host == "::" || strings.HasPrefix(host, "[") {
		host = reachableHostname()
	}
	return net.JoinHostPort(host, port)
}

// reachableHostname returns the host name if it resolves to a
// non-loopback address, else 127.0.0.1.
func reachableHostname() string {
	name, err := os.Hostname()
	if err != nil || name == "" {
		return "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, name)
	if err != nil {
		return "127.0.0.1"
	}
	for _, ip := range ips {
		if !ip.IP.IsLoopback() {
			return name
		}
	}
	return "127.0.0.1"
}

// OpsAddr is where other processes reach an ops listener bound to ops (the
// --ops flag): its own host when it names one, else advertise's host
// (the address the node registers for its other listener), so a listener
// on every interface is advertised under the node's reachable name.
// Empty when there is no ops listener, its port is chosen at random, or it
// is bound to loopback on a node advertised to other machines (no one
// else could reach it there).
func OpsAddr(ops, advertise string) string {
	host, port, err := net.SplitHostPort(ops)
	if err != nil || port == "" || port == "0" {
		return ""
	}
	adv, _, _ := net.SplitHostPort(advertise)
	switch {
	case host == "" || net.ParseIP(host).IsUnspecified():
		if adv == "" {
			return ""
		}
		host = adv
	case isLoopback(host) && adv != "" && !isLoopback(adv):
		return ""
	}
	return net.JoinHostPort(host, port)
}

// isLoopback reports whether host names this machine only.
func isLoopback(host string) bool {
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	return host == "localhost"
}

// Host is what a service is mounted on, whether it runs alone or beside
// others in one process (cmd/p2pd): the gRPC server its services join,
// the ops listener that carries its metrics (and the origin's admin API),
// and the pool it dials other nodes with.
type Host struct {
	GRPC *grpc.Server
	Ops  *Ops
	Pool *spp.Pool
}
