// Command tracker is p2pd's tracker: nodes register with it and announce
// the chunks they hold; edges and cachenodes ask it where chunks are.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/p2pd/p2pd/internal/flagenv"
	"github.com/p2pd/p2pd/internal/nodeauth"
	"github.com/p2pd/p2pd/internal/service"
	"github.com/p2pd/p2pd/internal/telemetry"
	"github.com/p2pd/p2pd/services/tracker/trackerserver"
	"google.golang.org/grpc"
)

const usage = `tracker — where the chunks of the p2pd CDN are.

Nodes register under an etcd lease (a dead node disappears when it
expires) and announce the chunks they hold; Locate ranks the nodes to ask
for each chunk from an in-memory index kept current by an etcd watch.
Several trackers may share one etcd cluster.

Only a caller with the origin credential (--origin-token-file on both the
tracker and the origin) or an origin certificate may publish or unpublish.
Without mutual TLS or a join token any process that reaches the port may
join as a cachenode (its chunks are verified by everyone), never publish,
unpublish, or replace or remove another node. See docs/security.md.

Usage: tracker (--etcd-endpoints HOST:PORT,... | --embedded-etcd DIR) [flags]
`

func main() {
	cmd := service.NewCommand("tracker", usage, "127.0.0.1:9091")
	fs := cmd.Flags()
	var (
		cfg       trackerserver.ServeConfig
		endpoints string
		tokens    struct{ origin, admin, join string }
	)
	fs.StringVar(&cfg.Listen, "listen", ":7000", "address to serve the tracker (gRPC) on")
	fs.StringVar(&endpoints, "etcd-endpoints", "", "comma-separated host:port of an external etcd cluster")
	fs.StringVar(&cfg.Etcd.EmbeddedDir, "embedded-etcd", "", "run an embedded single-member etcd keeping its data in `DIR`")
	fs.StringVar(&cfg.Etcd.EmbeddedClientAddr, "etcd-client-addr", "127.0.0.1:2379", "client address of the embedded etcd")
	fs.StringVar(&cfg.Etcd.EmbeddedPeerAddr, "etcd-peer-addr", "127.0.0.1:2380", "peer address of the embedded etcd")
	fs.DurationVar(&cfg.Tracker.LeaseTTL, "lease-ttl", 10*time.Second, "lease time to live of registered nodes: how long a dead node lingers")
	fs.BoolVar(&cfg.Tracker.PeerSharing, "peer-sharing", true, "let cachenodes fetch from each other; when false they are sent to origins only")
	fs.StringVar(&tokens.origin, "origin-token-file", "", "file holding the origin credential: who presents it may publish, unpublish and register an origin (default: $"+nodeauth.OriginTokenEnv+"; none: only origin certificates may)")
	fs.StringVar(&tokens.admin, "admin-token-file", "", "file holding the admin token: may do what an origin may, and replace or remove any node (default: $P2PD_ADMIN_TOKEN)")
	fs.StringVar(&tokens.join, "join-token-file", "", "file holding the join token nodes must present to register (default: $"+nodeauth.JoinTokenEnv+"; none: any cachenode or edge may join, see docs/security.md)")
	fs.BoolVar(&cfg.Tracker.ProbeNodes, "probe-nodes", true, "rank only nodes that answer the tracker's own health probe; a node reported failing is dropped until it answers again")
	fs.IntVar(&cfg.Tracker.MaxNodes, "max-nodes", 10000, "most live registrations in total")
	fs.IntVar(&cfg.Tracker.MaxNodesPerAddr, "max-nodes-per-addr", 64, "most live registrations made from one source address (-1: no limit)")
	cmd.Main(func(ctx context.Context, env *service.Env) error {
		if fs.NArg() > 0 {
			return flagenv.Usagef("unexpected arguments %q", fs.Args())
		}
		for _, e := range strings.Split(endpoints, ",") {
			if e = strings.TrimSpace(e); e != "" {
				cfg.Etcd.Endpoints = append(cfg.Etcd.Endpoints, e)
			}
		}
		if (len(cfg.Etcd.Endpoints) > 0) == (cfg.Etcd.EmbeddedDir != "") {
			return flagenv.Usagef("exactly one of --etcd-endpoints and --embedded-etcd is required")
		}
		cfg.Tracker.Logger, cfg.Ops = env.Log, env.Ops
		var err error
		if cfg.Tracker.OriginToken, err = nodeauth.LoadToken(tokens.origin, nodeauth.OriginTokenEnv, nil); err != nil {
			return fmt.Errorf("--origin-token-file: %w", err)
		}
		if cfg.Tracker.AdminToken, err = nodeauth.LoadToken(tokens.admin, "P2PD_ADMIN_TOKEN", nil); err != nil {
			return fmt.Errorf("--admin-token-file: %w", err)
		}
		if cfg.Tracker.JoinToken, err = nodeauth.LoadToken(tokens.join, nodeauth.JoinTokenEnv, nil); err != nil {
			return fmt.Errorf("--join-token-file: %w", err)
		}
		cfg.ServerOptions = append(cfg.ServerOptions, env.TLS.ServerOption())
		cfg.Tracker.ProbeDialOptions = []grpc.DialOption{env.TLS.DialOption()}
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
