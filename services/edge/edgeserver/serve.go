package edgeserver

import (
	"context"
	"fmt"
	"net"
	"net/http"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/accesslog"
	"github.com/p2pd/p2pd/internal/connlimit"
	"github.com/p2pd/p2pd/internal/cors"
	"github.com/p2pd/p2pd/internal/nodeauth"
	"github.com/p2pd/p2pd/internal/service"
	"github.com/p2pd/p2pd/internal/spp"
	"github.com/p2pd/p2pd/internal/telemetry"
	"github.com/p2pd/p2pd/internal/tlsconfig"
	"github.com/p2pd/p2pd/internal/webui"
	"github.com/p2pd/p2pd/services/tracker/trackerclient"
)

// ProcessConfig is a standalone edge process, as its flags give it.
type ProcessConfig struct {
	// Config is the edge's; Tracker, Commands, Nodes, Registry and
	// TraceID are filled in by Serve.
	Config
	Listen   string // viewers' HTTP address
	Ops      string // ops listener address, empty for none
	Trackers string // comma-separated tracker addresses
	// Advertise is where viewers reach this edge, registered with the
	// tracker (default: derived from Listen).
	Advertise string
	TLS       *tlsconfig.Creds
	JoinToken string           // presented to the tracker to register
	Limits    connlimit.Config // bounds on viewers' connections
	CORS      cors.Flags       // cross-origin answers to viewers' pages
	AccessLog accesslog.Flags  // one line per viewer request
}

// Handler is the viewers' HTTP front of an edge: the player page and
// file list over the tracker's files, the files themselves from edge,
// traced. A standalone edge and cmd/p2pd serve the same.
func Handler(tc webui.FileLister, edge *Server) http.Handler {
	return telemetry.HTTPHandler(webui.Player(webui.TrackerVideos(tc), edge), "edge")
}

// Serve runs a standalone edge until ctx ends: viewers' HTTP and the ops
// listener. One listener failing takes the other down.
func Serve(ctx context.Context, pc ProcessConfig) error {
	log := pc.Logger
	tc, err := trackerclient.Dial(pc.Trackers, pc.TLS.DialOption(), nodeauth.WithTokens(nodeauth.JoinTokenHeader, pc.JoinToken))
	if err != nil {
		return err
	}
	defer tc.Close()
	pool := spp.NewPool(append(service.GRPCDialOptions(), pc.TLS.DialOption())...)
	defer pool.Close() // after the edge's Close below
	ops := service.NewOps()
	cfg := pc.Config
	cfg.Tracker, cfg.Commands, cfg.Nodes, cfg.Registry, cfg.TraceID = tc, tc, pool, ops.Registry, telemetry.TraceID
	edge, err := New(cfg)
	if err != nil {
		return err
	}
	defer edge.Close() // after the HTTP server has drained its requests
	tel, err := telemetry.Setup(ctx, "edge", edge.NodeID(), log)
	if err != nil {
		return err
	}
	defer tel.Close() // flushes the spans of the last requests
	viewers, err := pc.CORS.Handler(Handler(tc, edge))
	if err != nil {
		return err
	}
	access, err := pc.AccessLog.Open()
	if err != nil {
		return err
	}
	defer access.Close()
	l, err := net.Listen("tcp", pc.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", pc.Listen, err)
	}
	if pc.Advertise == "" {
		pc.Advertise = service.HostPort(pc.Listen, l)
	}
	// Registered as an edge: listed among the nodes (the dashboard, the
	// admin API's stats read its counters at OpsAddr), never a chunk source.
	member := tc.Join(ctx, &trackerv1.Node{
		Id:       edge.NodeID(),
		Role:     trackerv1.Role_ROLE_EDGE,
		HttpAddr: pc.Advertise,
		OpsAddr:  service.OpsAddr(pc.Ops, pc.Advertise),
		Region:   pc.Region,
	}, nil)
	defer member.Close()
	edge.ReportThrough(member)

	ctx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, 2)
	go func() { errc <- service.ServeOps(ctx, pc.Ops, ops) }()
	go func() {
		errc <- service.ServeHTTP(ctx, connlimit.Wrap(l, pc.Limits), service.NewHTTPServer(access.Handler(viewers)))
	}()
	ops.SetReady(true)
	log.Info("edge ready", "listen", l.Addr().String(), "tracker", pc.Trackers, "ops", pc.Ops)
	var first error
	for range 2 {
		if err := <-errc; err != nil && first == nil {
			first = err
			stop() // one listener failed: take the other down too
		}
	}
	return first
}
