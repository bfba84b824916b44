// Command cachenode is a p2pd cache: it keeps verified chunks on disk,
// serves them over SPP and fetches what it misses from the sources the
// tracker ranks (peer cachenodes, the origin). Its wiring is
// cacheserver.Serve; this file is its flags.
package main

import (
	"context"
	"fmt"

	"github.com/p2pd/p2pd/internal/flagenv"
	"github.com/p2pd/p2pd/internal/nodeauth"
	"github.com/p2pd/p2pd/internal/service"
	"github.com/p2pd/p2pd/services/cachenode/cacheserver"
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
	cmd := service.NewCommand("cachenode", usage, "127.0.0.1:9092")
	fs := cmd.Flags()
	var (
		pc       cacheserver.ProcessConfig
		maxBytes = flagenv.Bytes(10 << 30)
		memory   = flagenv.CacheBytes(256 << 20)
		joinFile string
	)
	fs.StringVar(&pc.Listen, "listen", ":7200", "address to serve SPP (gRPC) on")
	fs.StringVar(&pc.Advertise, "advertise", "", "host:port other nodes dial for SPP (default: derived from --listen)")
	fs.StringVar(&pc.NodeID, "node-id", "", "node id (default: cachenode@ADVERTISE)")
	fs.StringVar(&pc.Region, "region", "", "region label: near peers share it, and only a shield fetches from outside it (env P2PD_REGION)")
	fs.BoolVar(&pc.Shield, "shield", false, "a gateway of the region: the region's misses come through its shields (none: a node of the region is elected per chunk)")
	fs.StringVar(&pc.Trackers, "tracker", "", "tracker address(es), comma-separated host:port (required)")
	fs.StringVar(&pc.CacheDir, "cache-dir", "", "directory of the chunk store (required)")
	fs.Var(&maxBytes, "max-bytes", "most chunk bytes to keep: a `size` in bytes, or with a K, M, G or T suffix (powers of 1024)")
	fs.BoolVar(&pc.FetchMisses, "fetch", true, "fetch chunks not held from other nodes (false: serve only what is held)")
	fs.Var(&memory, "memory-cache", "verified chunks kept in memory in front of the store, served with no disk read and no second digest: a `size`, 0 for none")
	fs.IntVar(&pc.Prefetch, "prefetch", 16, "chunks fetched ahead of sequential playback, past the end of the viewer's request (0: none)")
	fs.StringVar(&joinFile, "join-token-file", "", "file holding the join token the tracker demands to register (default: $"+nodeauth.JoinTokenEnv+")")
	cmd.Main(func(ctx context.Context, env *service.Env) error {
		if pc.CacheDir == "" || pc.Trackers == "" {
			return flagenv.Usagef("--cache-dir and --tracker are required")
		}
		var err error
		if pc.JoinToken, err = nodeauth.LoadToken(joinFile, nodeauth.JoinTokenEnv, nil); err != nil {
			return fmt.Errorf("--join-token-file: %w", err)
		}
		pc.Logger, pc.TLS, pc.Ops = env.Log, env.TLS, env.Ops
		pc.MaxBytes, pc.MemoryCacheBytes = int64(maxBytes), int64(memory)
		if pc.Prefetch == 0 {
			pc.Prefetch = -1 // the config's "none"
		}
		return cacheserver.Serve(ctx, pc)
	})
}
