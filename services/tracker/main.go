// Command tracker is p2pd's tracker: nodes register with it and announce
// the chunks they hold; edges and cachenodes ask it where chunks are.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/p2pd/p2pd/internal/service"
	"github.com/p2pd/p2pd/internal/telemetry"
	"github.com/p2pd/p2pd/services/tracker/trackerserver"
)

const usage = `tracker — where the chunks of the p2pd CDN are.

Nodes register under an etcd lease (a dead node disappears when it
expires) and announce the chunks they hold; Locate ranks the nodes to ask
for each chunk from an in-memory index kept current by an etcd watch.
Several trackers may share one etcd cluster.

Usage: tracker (--etcd-endpoints HOST:PORT,... | --embedded-etcd DIR) [flags]
`

func main() {
	cmd := service.NewCommand("tracker", usage, "127.0.0.1:9091")
	fs := cmd.Flags()
	var (
		cfg       trackerserver.ServeConfig
		endpoints string
	)
	fs.StringVar(&cfg.Listen, "listen", ":7000", "address to serve the tracker (gRPC) on")
	fs.StringVar(&endpoints, "etcd-endpoints", "", "comma-separated host:port of an external etcd cluster")
	fs.StringVar(&cfg.Etcd.EmbeddedDir, "embedded-etcd", "", "run an embedded single-member etcd keeping its data in `DIR`")
	fs.StringVar(&cfg.Etcd.EmbeddedClientAddr, "etcd-client-addr", "127.0.0.1:2379", "client address of the embedded etcd")
	fs.StringVar(&cfg.Etcd.EmbeddedPeerAddr, "etcd-peer-addr", "127.0.0.1:2380", "peer address of the embedded etcd")
	fs.DurationVar(&cfg.Tracker.LeaseTTL, "lease-ttl", 10*time.Second, "lease time to live of registered nodes: how long a dead node lingers")
	fs.BoolVar(&cfg.Tracker.PeerSharing, "peer-sharing", true, "let cachenodes fetch from each other; when false they are sent to origins only")
	cmd.Main(func(ctx context.Context, env *service.Env) error {
		if fs.NArg() > 0 {
			return fmt.Errorf("unexpected arguments %q", fs.Args())
		}
		for _, e := range strings.Split(endpoints, ",") {
			if e = strings.TrimSpace(e); e != "" {
				cfg.Etcd.Endpoints = append(cfg.Etcd.Endpoints, e)
			}
		}
		if (len(cfg.Etcd.Endpoints) > 0) == (cfg.Etcd.EmbeddedDir != "") {
			return cmd.Usage(errors.New("exactly one of --etcd-endpoints and --embedded-etcd is required"))
		}
		cfg.Tracker.Logger, cfg.Ops = env.Log, env.Ops
		cfg.ServerOptions = append(cfg.ServerOptions, env.TLS.ServerOption())
		// A tracker has no node id of its own: its host names it in traces.
		host, _ := os.Hostname()
		tel, err := telemetry.Setup(ctx, "tracker", "tracker@"+host, env.Log)
		if err != nil {
			return err
		}
		defer tel.Close() // flushes the spans of the last requests
		return trackerserver.Serve(ctx, cfg)
	})
}
