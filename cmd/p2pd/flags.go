package main

import (
	"flag"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/p2pd/p2pd/internal/accesslog"
	"github.com/p2pd/p2pd/internal/connlimit"
	"github.com/p2pd/p2pd/internal/cors"
	"github.com/p2pd/p2pd/internal/flagenv"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/service"
	"github.com/p2pd/p2pd/internal/tlsconfig"
)

// opsPortOffset derives the ops listener's default port from -P: 8080
// gives 9090, and two nodes on one machine with different -P never share
// one.
const opsPortOffset = 1010

// defaultOps is the ops listener when --ops is not given: on loopback
// (the -B address when that is a loopback one, so nodes on 127.0.0.x each
// have their own; 127.0.0.1 otherwise: metrics, pprof and the admin API
// are never exposed because viewers' HTTP is), at -P + 1010, or -P - 1010
// when that would pass 65535.
func defaultOps(bind string, port int) string {
	host := "127.0.0.1"
	if ip := net.ParseIP(bind); ip != nil && ip.IsLoopback() {
		host = bind
	}
	p := port + opsPortOffset
	if p > 65535 {
		p = port - opsPortOffset
	}
	return net.JoinHostPort(host, strconv.Itoa(p))
}

// config is the p2pd command line.
type config struct {
	publish     string // -p: server mode, publish this directory
	loadSharing bool   // -i
	port        int    // -P
	cache       string // -c: cache mode, store chunks here
	host        string // -A
	fetch       bool   // -n
	public      bool   // -N
	server      string // -S
	region      string
	bind        string // -B
	advertise   string
	nodeID      string
	maxBytes    string
	memoryCache string
	prefetch    int
	chunkSize   int
	etcdDir     string
	// adminTokenFile holds the admin API token (server).
	adminTokenFile string
	// joinTokenFile holds the join token (server: demanded of caches;
	// cache: presented to the server).
	joinTokenFile string
	// traceQueryURL is the trace store's query API the admin API reads
	// traces from (server).
	traceQueryURL string
	rescan        string
	common        service.Common
	// cors and accessLog apply to viewers' HTTP.
	cors      cors.Flags
	accessLog accesslog.Flags
	// limits bound viewers' connections.
	limits connlimit.Config
	// tls is mutual TLS between nodes (their gRPC on the shared port).
	tls tlsconfig.Flags
}

const manPage = `p2pd — a peer-assisted CDN for video on demand, in one binary.

SYNOPSIS
  p2pd -p DIR [-i] [-P PORT] [-B ADDR] [-N] [-A HOST]       server
  p2pd -c DIR -S HOST[:PORT] [-n] [-N] [-A HOST] [-P PORT]  cache
  p2pd -c DIR -S CACHE[:PORT] ...                           cache below a cache
  p2pd admin COMMAND ...                                    admin API client
  p2pd --help | --version

DESCRIPTION
  A server (-p) publishes the files of DIR: it runs an embedded etcd, the
  tracker and the origin, and answers viewers' HTTP on -P. A cache (-c)
  stores chunks in DIR and joins the node named by -S; it learns
  everything else (the tracker, the other caches) from that node, so
  caches are added and removed without touching any configuration.

  -S may name a server or a cache: the CDN is a tree. A cache that joins a
  cache is its child: it fetches a miss from the caches that share its
  parent first, then from its parent, which fetches what it misses in
  turn; never from the server while a cache above it answers. A dead
  parent is skipped for the next one up (grandparent, then the server)
  until it is back.

  One port per node: viewers' HTTP and the nodes' gRPC (chunk transfer and
  tracker) share -P, told apart by protocol. -N and -A restrict viewers'
  HTTP only, never the traffic between nodes.

  Single-letter options combine as in other Unix tools (-inP 8080 is
  -i -n -P 8080); long options take two dashes (one works too).

OPTIONS
  -p, --publish DIR     publish the media files in DIR (server mode)
  -i, --load-sharing    load sharing between server and caches: caches also
                        fetch from each other (server only)
  -P, --port PORT       HTTP (and gRPC) port (default 8080)
  -c, --cache DIR       run as a cache, storing chunks in DIR
  -A, --host HOST       serve only requests whose Host is HOST (port
                        ignored); others get 404, never content
  -n, --fetch           fetch data that is not cached when it is requested;
                        without it a cache serves only what it holds
  -N, --public          accept HTTP requests from any client; without it
                        only loopback clients are served
  -S, --server HOST[:PORT]
                        the node this cache joins, one step up in the
                        hierarchy: a server or a cache (port default 8080)
  -B, --bind ADDR       address to listen on (default: all); lets several
                        nodes share one machine on loopback addresses
      --advertise HOST:PORT
                        address other nodes dial for this node (default:
                        -B:-P, or the address this cache uses to reach -S)
      --region NAME     region label of this node (default: its parent's);
                        cachenodes and edges of a region are preferred to
                        sources elsewhere
      --max-bytes SIZE  cache size limit, e.g. 512M, 20G (default 10G)
      --memory-cache SIZE
                        verified chunks kept in memory (a cache: in front
                        of its disk; a server: in front of its origin),
                        served with no disk read and no second digest
                        (default 256M; 0 disables)
      --prefetch N      chunks a cache fetches ahead of sequential
                        playback, past the viewer's request (default 16;
                        0 disables)
      --chunk-size N    chunk size for published files (default 1048576)
      --etcd-dir DIR    data directory of the server's embedded etcd
                        (default: a temporary directory)
      --rescan DURATION rescan the published directory this often (10s)
      --admin-token-file FILE
                        bearer token of the admin API on a server's ops
                        listener, and of pprof on any ops listener off
                        loopback (default $P2PD_ADMIN_TOKEN; none: the API
                        refuses every call)
      --join-token-file FILE
                        join token (default $P2PD_JOIN_TOKEN): a server
                        with one lets only caches presenting it join; a
                        cache presents it to -S. Without a token or TLS a
                        server lets any cache join (see SECURITY)
      --trace-query-url URL
                        Jaeger's query API (http://HOST:16686) the admin
                        API reads a request's trace from for the
                        dashboard's trace view (server; default none)
      --max-conns N     most viewers' connections open at once (10000);
                        more are answered 503 with Retry-After
      --max-conns-per-client N
                        most connections one client address keeps open
                        (256); more are answered 503 with Retry-After
      --send-timeout DURATION
                        close a viewer's connection that accepts no byte
                        for this long (20s)
      --tls-cert FILE, --tls-key FILE, --tls-ca FILE
                        mutual TLS between nodes: this node's certificate
                        and key (PEM) and the CA that signs every node's;
                        nodes without a valid certificate can neither
                        fetch chunks nor register. The certificate must
                        name the addresses other nodes dial (-B, -S,
                        --advertise) and 127.0.0.1 or -B, and allow both
                        server and client use. Viewers' HTTP is not
                        affected. A certificate with the URI SAN
                        p2pd://ROLE/ID (origin, cachenode) may register
                        only as that role and id.
      --node-id ID      node id (default: derived from the address)
      --ops ADDR        ops listener: /metrics /healthz /readyz /debug/pprof/
                        and a server's admin API and dashboard (default:
                        port -P + 1010 on 127.0.0.1, or on -B when -B is a
                        loopback address: -P 8080 gives 127.0.0.1:9090; it
                        is never moved off loopback unless named here;
                        empty disables). Off loopback, pprof needs the
                        admin token. A node whose ops port is taken warns
                        and runs without it.
      --cors-origins LIST
                        origins whose web pages may read content with
                        fetch/XHR and Range (CORS): * (default) for any,
                        or comma-separated scheme://host[:port]; empty
                        sends no CORS headers
      --access-log FILE one line per viewer request, appended to FILE
                        (- for stderr; default none)
      --access-log-format FORMAT
                        combined (Apache/nginx combined, then range,
                        seconds and trace id; default) or json (JSON lines)
      --log-level LEVEL debug, info, warn, error (default info)
      --log-json        log JSON lines
      --version         print the version and exit
  -h, --help            print this manual and exit

  Every long option can also be set in the environment as P2PD_ + its name
  in upper case with dashes as underscores (P2PD_MAX_BYTES=20G).

SECURITY
  Only the server's own origin (in the same process) or a holder of the
  admin token may publish, unpublish or change which version a name
  serves. On an open network (no join token, no TLS), as in scenario 3,
  any process that reaches the server's port may join as a cache and
  serve chunks, which every node verifies against the origin's digests,
  so it can waste bandwidth but never change a byte a viewer gets; it can
  never publish, unpublish, or replace or remove another node (each
  registration has its own secret). A join token or mutual TLS closes
  joining to strangers. See docs/security.md.

EXAMPLES
  Scenario 1, a single server on port 8080 for /mediafiles:
    p2pd -p /mediafiles -P 8080 -N

  Scenario 2, independent servers with identical content behind one DNS
  name (round robin); run the same command on each, no coordination:
    p2pd -p /mediafiles -P 8080 -N

  Scenario 3, a non-public server and caches that viewers reach as
  cdn.example.com; caches fetch misses from the server or each other:
    server$ p2pd -i -p /mediafiles -P 8080
    cache$  p2pd -c /cachefiles -A cdn.example.com -n -N -P 8080 -S server.example.com

  Scenario 4, a hierarchy: a cache at a site joins the server, and the
  caches of the site join that cache; the server sends each chunk to the
  site about once:
    server$ p2pd -i -p /mediafiles -P 8080
    site$   p2pd -c /cachefiles -n -P 8080 -S server.example.com
    leaf$   p2pd -c /cachefiles -A cdn.example.com -n -N -P 8080 -S site.example.com
`

func parseFlags(args []string) (*config, error) {
	c := &config{}
	fs := flagenv.NewFlagSet("p2pd")
	str := func(p *string, short, long, def string) {
		fs.StringVar(p, short, def, "")
		fs.StringVar(p, long, def, "")
	}
	boolean := func(p *bool, short, long string) {
		fs.BoolVar(p, short, false, "")
		fs.BoolVar(p, long, false, "")
	}
	str(&c.publish, "p", "publish", "")
	boolean(&c.loadSharing, "i", "load-sharing")
	fs.IntVar(&c.port, "P", 8080, "")
	fs.IntVar(&c.port, "port", 8080, "")
	str(&c.cache, "c", "cache", "")
	str(&c.host, "A", "host", "")
	boolean(&c.fetch, "n", "fetch")
	boolean(&c.public, "N", "public")
	str(&c.server, "S", "server", "")
	str(&c.bind, "B", "bind", "")
	fs.StringVar(&c.advertise, "advertise", "", "")
	fs.StringVar(&c.region, "region", "", "")
	fs.StringVar(&c.nodeID, "node-id", "", "")
	fs.StringVar(&c.maxBytes, "max-bytes", "10G", "")
	fs.StringVar(&c.memoryCache, "memory-cache", "256M", "")
	fs.IntVar(&c.prefetch, "prefetch", 16, "")
	fs.IntVar(&c.chunkSize, "chunk-size", manifest.DefaultChunkSize, "")
	fs.StringVar(&c.etcdDir, "etcd-dir", "", "")
	fs.StringVar(&c.adminTokenFile, "admin-token-file", "", "")
	fs.StringVar(&c.joinTokenFile, "join-token-file", "", "")
	fs.StringVar(&c.traceQueryURL, "trace-query-url", "", "")
	fs.StringVar(&c.rescan, "rescan", "10s", "")
	c.limits.Register(fs)
	c.common.Register(fs, "")
	c.tls.Register(fs)
	c.cors.Register(fs)
	c.accessLog.Register(fs)
	fs.Usage = func() { fmt.Fprint(fs.Output(), manPage) }
	if err := flagenv.Parse(fs, args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, flagenv.Usagef("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case c.publish == "" && c.cache == "":
		return nil, flagenv.Usagef("give -p DIR (server) or -c DIR -S SERVER (cache)")
	case c.publish != "" && c.cache != "":
		return nil, flagenv.Usagef("-p and -c exclude each other: a node is a server or a cache")
	case c.cache != "" && c.server == "":
		return nil, flagenv.Usagef("a cache needs -S HOST[:PORT], the server or cache to join")
	case c.publish != "" && c.server != "":
		return nil, flagenv.Usagef("-S is for caches; a server is the top of the hierarchy")
	case c.port <= 0 || c.port > 65535:
		return nil, flagenv.Usagef("-P %d: not a port", c.port)
	}
	for _, f := range []interface{ Validate() error }{&c.cors, &c.accessLog} {
		if err := f.Validate(); err != nil {
			return nil, &flagenv.UsageError{Err: err}
		}
	}
	opsGiven := false
	fs.Visit(func(f *flag.Flag) { opsGiven = opsGiven || f.Name == "ops" })
	if !opsGiven {
		c.common.Ops = defaultOps(c.bind, c.port)
	}
	if c.server != "" {
		if _, _, err := net.SplitHostPort(c.server); err != nil {
			c.server = net.JoinHostPort(strings.Trim(c.server, "[]"), "8080")
		}
	}
	return c, nil
}
