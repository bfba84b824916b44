// Command edge is the viewers' HTTP front of the p2pd CDN: it answers GET
// and HEAD (with Range) for published files, streaming verified chunks
// from the cachenodes the tracker ranks best. Its wiring is
// edgeserver.Serve; this file is its flags.
package main

import (
	"context"
	"fmt"

	"github.com/p2pd/p2pd/internal/flagenv"
	"github.com/p2pd/p2pd/internal/nodeauth"
	"github.com/p2pd/p2pd/internal/service"
	"github.com/p2pd/p2pd/services/edge/edgeserver"
)

const usage = `edge — the viewers' HTTP front of the p2pd CDN.

Serves every published file at /NAME (GET and HEAD, Range, If-Range,
ETag, Last-Modified) and a list of them at /. Chunks come from the
cachenodes the tracker ranks best; a node that fails or stalls mid-stream
is replaced by the next one. The edge keeps no state of its own.

Usage: edge --tracker HOST:PORT[,HOST:PORT...] [flags]
`

func main() {
	cmd := service.NewCommand("edge", usage, "127.0.0.1:9093")
	fs := cmd.Flags()
	var (
		pc       edgeserver.ProcessConfig
		memory   = flagenv.CacheBytes(256 << 20)
		joinFile string
	)
	pc.Limits.Register(fs)
	pc.CORS.Register(fs)
	pc.AccessLog.Register(fs)
	fs.StringVar(&pc.Listen, "listen", ":8080", "address to serve viewers' HTTP on")
	fs.StringVar(&pc.Trackers, "tracker", "", "tracker address(es), comma-separated host:port (required)")
	fs.StringVar(&joinFile, "join-token-file", "", "file holding the join token the tracker demands to register (default: $"+nodeauth.JoinTokenEnv+")")
	fs.StringVar(&pc.Region, "region", "", "region label: the cachenodes of this region are asked first (env P2PD_REGION)")
	fs.StringVar(&pc.NodeID, "node-id", "", "node id sent with SPP requests and rate reports, and registered with the tracker (default: edge@HOSTNAME)")
	fs.StringVar(&pc.Advertise, "advertise", "", "host:port viewers reach this edge on, registered with the tracker so operators see it (default: derived from --listen)")
	fs.Var(&memory, "memory-cache", "verified chunks kept in memory, so hot content needs no request upstream and no second digest: a `size`, 0 for none")
	cmd.Main(func(ctx context.Context, env *service.Env) error {
		if pc.Trackers == "" {
			return flagenv.Usagef("--tracker is required")
		}
		for _, f := range []interface{ Validate() error }{&pc.CORS, &pc.AccessLog} {
			if err := f.Validate(); err != nil {
				return &flagenv.UsageError{Err: err}
			}
		}
		// Edges register (so operators see them) like cachenodes: with the
		// join token when the trackers demand one.
		var err error
		if pc.JoinToken, err = nodeauth.LoadToken(joinFile, nodeauth.JoinTokenEnv, nil); err != nil {
			return fmt.Errorf("--join-token-file: %w", err)
		}
		pc.Logger, pc.TLS, pc.Ops = env.Log, env.TLS, env.Ops
		pc.MemoryCacheBytes = int64(memory)
		return edgeserver.Serve(ctx, pc)
	})
}
