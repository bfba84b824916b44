// Command origin publishes the files of a media directory to the p2pd CDN:
// it builds each file's manifest, records it with the tracker and serves
// chunks over SPP to cachenodes. Its wiring is originrun.Serve; this
// file is its flags.
package main

import (
	"context"
	"fmt"

	"github.com/p2pd/p2pd/internal/flagenv"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/nodeauth"
	"github.com/p2pd/p2pd/internal/service"
	"github.com/p2pd/p2pd/services/origin/adminserver"
	"github.com/p2pd/p2pd/services/origin/originrun"
)

const usage = `origin — publishes a media directory to the p2pd CDN.

Every regular file under --media-dir is published under its path relative
to the directory (subdirectories allowed; hidden files and symlinks are
skipped). The directory is rescanned every --rescan: new files are
published, changed files get a new version, removed files are unpublished.

Usage: origin --media-dir DIR --tracker HOST:PORT [flags]
`

func main() {
	cmd := service.NewCommand("origin", usage, "127.0.0.1:9090")
	fs := cmd.Flags()
	var (
		pc        originrun.ProcessConfig
		tokenFile string
		originTok string
	)
	fs.StringVar(&pc.Origin.MediaDir, "media-dir", "", "directory of media files to publish (required)")
	fs.StringVar(&pc.Listen, "listen", ":7100", "address to serve SPP (gRPC) on")
	fs.StringVar(&pc.Origin.Advertise, "advertise", "", "host:port other nodes dial for SPP (default: derived from --listen)")
	fs.StringVar(&pc.Origin.NodeID, "node-id", "", "node id (default: origin@ADVERTISE)")
	fs.StringVar(&pc.Trackers, "tracker", "", "tracker address(es), comma-separated host:port (required)")
	fs.IntVar(&pc.Origin.ChunkSize, "chunk-size", manifest.DefaultChunkSize, "chunk size in bytes for newly published files")
	fs.DurationVar(&pc.Origin.Rescan, "rescan", 0, "rescan the media directory this often (0: only at start)")
	fs.StringVar(&originTok, "origin-token-file", "", "file holding the origin credential the tracker demands to publish (default: $"+nodeauth.OriginTokenEnv+"; the same as the tracker's)")
	fs.StringVar(&pc.TraceQueryURL, "trace-query-url", "", "Jaeger's query API (http://HOST:16686) the admin API reads a request's trace from, for the dashboard's trace view (empty: none)")
	fs.StringVar(&tokenFile, "admin-token-file", "", "file holding the admin API bearer token (default: $"+adminserver.TokenEnv+"; none: the API refuses every call)")
	cmd.Main(func(ctx context.Context, env *service.Env) error {
		if pc.Origin.MediaDir == "" || pc.Trackers == "" {
			return flagenv.Usagef("--media-dir and --tracker are required")
		}
		pc.Logger, pc.TLS, pc.Ops = env.Log, env.TLS, env.Ops
		var err error
		if pc.AdminToken, err = adminserver.LoadToken(tokenFile); err != nil {
			return err
		}
		if pc.OriginToken, err = nodeauth.LoadToken(originTok, nodeauth.OriginTokenEnv, nil); err != nil {
			return fmt.Errorf("--origin-token-file: %w", err)
		}
		return originrun.Serve(ctx, pc)
	})
}
