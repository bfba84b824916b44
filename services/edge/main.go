// Command edge is the viewers' HTTP front of the p2pd CDN: it answers GET
// and HEAD (with Range) for published files, streaming verified chunks
// from the cachenodes the tracker ranks best.
package main

import (
	"fmt"
	"net"
	"os"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/accesslog"
	"github.com/p2pd/p2pd/internal/connlimit"
	"github.com/p2pd/p2pd/internal/cors"
	"github.com/p2pd/p2pd/internal/flagenv"
	"github.com/p2pd/p2pd/internal/nodeauth"
	"github.com/p2pd/p2pd/internal/service"
	"github.com/p2pd/p2pd/internal/spp"
	"github.com/p2pd/p2pd/internal/telemetry"
	"github.com/p2pd/p2pd/internal/tlsconfig"
	"github.com/p2pd/p2pd/internal/webui"
	"github.com/p2pd/p2pd/services/edge/edgeserver"
	"github.com/p2pd/p2pd/services/tracker/trackerclient"
)

const usage = `edge — the viewers' HTTP front of the p2pd CDN.

Serves every published file at /NAME (GET and HEAD, Range, If-Range,
ETag, Last-Modified) and a list of them at /. Chunks come from the
cachenodes the tracker ranks best; a node that fails or stalls mid-stream
is replaced by the next one. The edge keeps no state of its own.

Usage: edge --tracker HOST:PORT[,HOST:PORT...] [flags]
`

func main() {
	os.Exit(flagenv.Report(os.Stdout, os.Stderr, "edge", run(os.Args[1:])))
}

func run(args []string) error {
	fs := flagenv.NewFlagSet("edge")
	var (
		common   service.Common
		listen   string
		trackers string
		nodeID   string
		region   string
		adv      string
		joinFile string
		memory   = flagenv.CacheBytes(256 << 20)
		tlsFlags tlsconfig.Flags
		corsFlag cors.Flags
		logFlags accesslog.Flags
		limits   connlimit.Config
	)
	fs.StringVar(&listen, "listen", ":8080", "address to serve viewers' HTTP on")
	fs.StringVar(&trackers, "tracker", "", "tracker address(es), comma-separated host:port (required)")
	fs.StringVar(&nodeID, "node-id", "", "node id sent with SPP requests and rate reports, and registered with the tracker (default: edge@HOSTNAME)")
	fs.StringVar(&joinFile, "join-token-file", "", "file holding the join token the tracker demands to register (default: $"+nodeauth.JoinTokenEnv+")")
	fs.StringVar(&region, "region", "", "region label: the cachenodes of this region are asked first (env P2PD_REGION)")
	fs.StringVar(&adv, "advertise", "", "host:port viewers reach this edge on, registered with the tracker so operators see it (default: derived from --listen)")
	fs.Var(&memory, "memory-cache", "verified chunks kept in memory, so hot content needs no request upstream and no second digest: a `size`, 0 for none")
	limits.Register(fs)
	common.Register(fs, "127.0.0.1:9093")
	tlsFlags.Register(fs)
	corsFlag.Register(fs)
	logFlags.Register(fs)
	fs.Usage = flagenv.Usage(fs, usage)
	if err := flagenv.Parse(fs, args); err != nil {
		return err
	}
	if trackers == "" {
		return flagenv.Usagef("--tracker is required")
	}
	for _, f := range []interface{ Validate() error }{&corsFlag, &logFlags} {
		if err := f.Validate(); err != nil {
			return &flagenv.UsageError{Err: err}
		}
	}
	log, err := common.Logger("edge")
	if err != nil {
		return err
	}
	creds, err := tlsFlags.Load()
	if err != nil {
		return err
	}
	ctx, stop := service.SignalContext()
	defer stop()

	// Edges register (so operators see them) like cachenodes: with the
	// join token when the trackers demand one.
	join, err := nodeauth.LoadToken(joinFile, nodeauth.JoinTokenEnv, nil)
	if err != nil {
		return fmt.Errorf("--join-token-file: %w", err)
	}
	tc, err := trackerclient.Dial(trackers, creds.DialOption(), nodeauth.WithTokens(nodeauth.JoinTokenHeader, join))
	if err != nil {
		return err
	}
	defer tc.Close()
	pool := spp.NewPool(append(service.GRPCDialOptions(), creds.DialOption())...)
	defer pool.Close() // after the edge's Close below
	ops := service.NewOps()
	edge, err := edgeserver.New(edgeserver.Config{
		Tracker:          tc,
		Commands:         tc,
		Nodes:            pool,
		NodeID:           nodeID,
		Region:           region,
		MemoryCacheBytes: int64(memory),
		Registry:         ops.Registry,
		Logger:           log,
		TraceID:          telemetry.TraceID,
	})
	if err != nil {
		return err
	}
	defer edge.Close() // after the HTTP server has drained its requests
	tel, err := telemetry.Setup(ctx, "edge", edge.NodeID(), log)
	if err != nil {
		return err
	}
	defer tel.Close() // flushes the spans of the last requests
	viewers, err := corsFlag.Handler(telemetry.HTTPHandler(webui.Player(webui.TrackerVideos(tc), edge), "edge"))
	if err != nil {
		return err
	}
	access, err := logFlags.Open()
	if err != nil {
		return err
	}
	defer access.Close()
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", listen, err)
	}

	if adv == "" {
		adv = service.HostPort(listen, l)
	}
	// Registered as an edge: listed among the nodes (the dashboard, the
	// admin API's stats read its counters at OpsAddr), never a chunk source.
	member := tc.Join(ctx, &trackerv1.Node{
		Id:       edge.NodeID(),
		Role:     trackerv1.Role_ROLE_EDGE,
		HttpAddr: adv,
		OpsAddr:  service.OpsAddr(common.Ops, adv),
		Region:   region,
	}, nil)
	defer member.Close()
	edge.ReportThrough(member)

	errc := make(chan error, 2)
	go func() { errc <- service.ServeOps(ctx, common.Ops, ops) }()
	go func() {
		errc <- service.ServeHTTP(ctx, connlimit.Wrap(l, limits), service.NewHTTPServer(access.Handler(viewers)))
	}()
	ops.SetReady(true)
	log.Info("edge ready", "listen", l.Addr().String(), "tracker", trackers, "ops", common.Ops)
	var first error
	for range 2 {
		if err := <-errc; err != nil && first == nil {
			first = err
			stop() // one listener failed: take the other down too
		}
	}
	return first
}
