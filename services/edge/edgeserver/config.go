package edgeserver

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"time"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// Tracker is the part of the tracker API the edge uses. Both
// trackerv1.TrackerServiceClient and trackerclient.Client satisfy it.
type Tracker interface {
	GetFile(ctx context.Context, in *trackerv1.GetFileRequest, opts ...grpc.CallOption) (*trackerv1.GetFileResponse, error)
	ListFiles(ctx context.Context, in *trackerv1.ListFilesRequest, opts ...grpc.CallOption) (*trackerv1.ListFilesResponse, error)
	Locate(ctx context.Context, in *trackerv1.LocateRequest, opts ...grpc.CallOption) (*trackerv1.LocateResponse, error)
	ReportRate(ctx context.Context, in *trackerv1.ReportRateRequest, opts ...grpc.CallOption) (*trackerv1.ReportRateResponse, error)
}

// Commands follows operators' commands (purge, prewarm) as the trackers
// record them; trackerclient.Client satisfies it.
type Commands interface {
	FollowCommands(ctx context.Context, nodeID string, log *slog.Logger, apply func(*trackerv1.Command))
}

// Nodes hands out SPP clients by node address; *spp.Pool satisfies it.
type Nodes interface {
	Client(addr string) (sppv1.ChunkServiceClient, error)
}

// Config configures an edge. Tracker is required; every other field has a
// default (see applyDefaults).
type Config struct {
	// Tracker answers GetFile, ListFiles and Locate.
	Tracker Tracker
	// Commands, when set, is followed for operators' commands: a purged
	// file's chunks leave the memory cache at once, so the next viewer's
	// request fetches them anew.
	Commands Commands
	// Nodes dials the chunk sources. Nil: the edge keeps its own pool of
	// plaintext gRPC connections, closed by Server.Close.
	Nodes Nodes
	// NodeID names the edge in SPP requests and rate reports.
	NodeID string
	// Region is the edge's region label: the tracker ranks the cachenodes
	// of this region first, so viewers' bytes stay in the region.
	Region string
	// Roles are the node roles chunks are fetched from.
	Roles []trackerv1.Role
	// Upstream, when set, is the one SPP node (host:port) every chunk is
	// fetched from, instead of the nodes the tracker ranks: the single
	// p2pd binary pins its edge to the cachenode or origin in the same
	// process, as the original p2pd served each viewer from its own node.
	Upstream string
	// Local, when set, serves every chunk from a node in this process
	// instead of over SPP (the manifest still comes from Upstream): no
	// socket, no second digest, since that node verified the chunks.
	Local LocalFunc
	// MemoryCacheBytes keeps that many bytes of verified chunks in
	// memory, so hot content is served with no request upstream and no
	// second digest. 0 means the default; negative disables it.
	MemoryCacheBytes int64
	// Registry receives the edge's metrics; nil leaves them unregistered.
	Registry prometheus.Registerer
	// Logger gets one line per request; nil uses slog.Default().
	Logger *slog.Logger

	// FileTTL is how long a GetFile answer (found or not) is reused: an
	// unpublished file stops being served within about this long.
	FileTTL time.Duration
	// FileCacheEntries bounds the GetFile cache.
	FileCacheEntries int
	// ManifestCacheBytes bounds the manifest cache by digest bytes.
	ManifestCacheBytes int64
	// LocateWindow is how many chunks one Locate asks about.
	LocateWindow int
	// LocateTTL is how long a Locate answer is reused.
	LocateTTL time.Duration
	// LocateCacheEntries bounds the Locate cache.
	LocateCacheEntries int
	// StaleIfError is how long past their TTL GetFile and Locate answers
	// may still be used when the tracker cannot be asked: viewers of what
	// the edge already knows are served through a tracker outage.
	// Negative disables it.
	StaleIfError time.Duration
	// Probation is how long a node that failed is tried only after the
	// others.
	Probation time.Duration
	// StallTimeout fails over from a node that sends nothing, on any of
	// its streams, for this long while the edge waits for a piece; a
	// busy node's queued stream waits up to 15 times as long (spp.Stall).
	StallTimeout time.Duration
	// AnswerTimeout fails over from a node that shows no sign of life
	// on a new stream for this long: no response headers (every p2pd
	// node answers them as it takes a Fetch), and no piece on any of its
	// streams (spp.Stall.Answer). Negative disables it.
	AnswerTimeout time.Duration
	// RPCTimeout bounds tracker calls and GetManifest.
	RPCTimeout time.Duration
	// ReportInterval is how often measured rates go to the tracker;
	// negative disables reporting.
	ReportInterval time.Duration

	// MaxWindow caps the chunks one read-ahead request asks for.
	MaxWindow int
	// ReadAhead is how many verified chunks may wait ahead of the viewer.
	ReadAhead int
	// MaxRanges is the most ranges a request may ask for; beyond it the
	// Range header is ignored and the whole file is sent (as nginx's
	// max_ranges), so a request cannot make the edge fetch one chunk per
	// tiny range.
	MaxRanges int
	// CacheControl is sent with file responses.
	CacheControl string

	// TraceID, if set, returns the trace id sent as X-Trace-Id. It is the
	// hook for OpenTelemetry: the wrapping otelhttp handler puts the span
	// in the request context and this reads it.
	TraceID func(*http.Request) string
	// Now is the clock for caches and probation (time.Now when nil),
	// injected so expiry is tested without sleeping.
	Now func() time.Time
}

// applyDefaults fills unset fields:
//   - NodeID "edge@HOSTNAME";
//   - Roles [ROLE_CACHENODE]: edges never touch the origin directly, a
//     cachenode fetches what it misses (the single binary may add the origin);
//   - FileTTL 1s: unpublish takes effect within seconds while a player's
//     burst of Range requests costs one GetFile;
//   - FileCacheEntries 4096;
//   - ManifestCacheBytes 64 MiB: ~20 manifests of 100 GB files at 1 MiB
//     chunks, thousands of typical ones;
//   - LocateWindow 64 chunks, LocateTTL 2s, LocateCacheEntries 4096: one
//     Locate serves a window of playback, and rankings follow node churn
//     within seconds;
//   - StaleIfError 10m: a tracker restart or an etcd outage is invisible
//     to viewers of files (and parts of files) the edge has served
//     recently; a stale answer maps a name to a version that was
//     published, whose bytes still verify;
//   - Probation 3s: the rest of a stream avoids a node that just failed
//     (rank.Health with a flat backoff: every failure puts it back);
//   - StallTimeout 2s: a viewer's stream stalls under 2s when a cachenode
//     dies; a killed node usually resets its connection much sooner;
//   - AnswerTimeout 500ms: a stopped node (SIGSTOP, a frozen host) that
//     the edge opens a new stream to costs half a second, not StallTimeout
//     (the manifest's hedge is 500ms too: see internal/source);
//   - RPCTimeout 5s;
//   - ReportInterval 1s;
//   - MaxWindow 16 chunks and ReadAhead 1 chunk (rangeio defaults);
//   - MemoryCacheBytes 256 MiB, none with Local (the local node keeps
//     its own): bounded like everything else per edge, and what turns a
//     hot file into memory copies instead of a hop and a digest per chunk;
//   - MaxRanges 32;
//   - CacheControl "public, max-age=60": a name may get a new version, so
//     downstream caches revalidate (cheaply: the strong ETag) after a minute.
func (c *Config) applyDefaults() {
	if c.NodeID == "" {
		host, _ := os.Hostname()
		c.NodeID = "edge@" + host
	}
	if len(c.Roles) == 0 {
		c.Roles = []trackerv1.Role{trackerv1.Role_ROLE_CACHENODE}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.FileTTL <= 0 {
		c.FileTTL = time.Second
	}
	if c.FileCacheEntries <= 0 {
		c.FileCacheEntries = 4096
	}
	if c.ManifestCacheBytes <= 0 {
		c.ManifestCacheBytes = 64 << 20
	}
	if c.LocateWindow <= 0 {
		c.LocateWindow = 64
	}
	if c.LocateTTL <= 0 {
		c.LocateTTL = 2 * time.Second
	}
	if c.LocateCacheEntries <= 0 {
		c.LocateCacheEntries = 4096
	}
	if c.StaleIfError == 0 {
		c.StaleIfError = 10 * time.Minute
	}
	if c.Probation <= 0 {
		c.Probation = 3 * time.Second
	}
	if c.StallTimeout <= 0 {
		c.StallTimeout = 2 * time.Second
	}
	if c.AnswerTimeout == 0 {
		c.AnswerTimeout = 500 * time.Millisecond
	}
	if c.RPCTimeout <= 0 {
		c.RPCTimeout = 5 * time.Second
	}
	if c.ReportInterval == 0 {
		c.ReportInterval = time.Second
	}
	if c.MaxWindow <= 0 {
		c.MaxWindow = 16
	}
	if c.ReadAhead <= 0 {
		c.ReadAhead = 1
	}
	if c.MemoryCacheBytes == 0 && c.Local == nil {
		c.MemoryCacheBytes = 256 << 20
	}
	if c.MaxRanges <= 0 {
		c.MaxRanges = 32
	}
	if c.CacheControl == "" {
		c.CacheControl = "public, max-age=60"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}
