package trackerserver

import (
	"log/slog"
	"time"

	"github.com/p2pd/p2pd/internal/rank"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Config tunes a tracker. The zero value is usable; see applyDefaults.
type Config struct {
	// Prefix starts every etcd key the tracker reads or writes.
	Prefix string
	// LeaseTTL is the lease time to live given to registering nodes: how
	// long a dead node lingers in Locate answers.
	LeaseTTL time.Duration
	// PeerSharing lets cachenodes fetch from each other. When false, a
	// cachenode asking Locate is given origins only (p2pd without -i). The
	// tracker binary's --peer-sharing defaults to true; the zero Config has
	// it off so it matches p2pd's flag.
	PeerSharing bool
	// CommandTTL is how long an operator's command (purge, prewarm) is
	// kept for nodes that were away when it was posted.
	CommandTTL time.Duration
	// MaxLocateChunks caps LocateRequest.chunk_count.
	MaxLocateChunks uint32
	// DefaultMaxSources is used when LocateRequest.max_sources is 0.
	DefaultMaxSources uint32
	// MaxSourcesCap caps LocateRequest.max_sources.
	MaxSourcesCap uint32
	// MaxHavesPerAnnounce caps AnnounceRequest.haves.
	MaxHavesPerAnnounce int
	// MaxAnnounceBytes caps the summed bitmap sizes of one Announce.
	MaxAnnounceBytes int
	// MaxChunkCount caps Have.chunk_count.
	MaxChunkCount uint32
	// MaxRateSamples caps ReportRateRequest.samples.
	MaxRateSamples int
	// MinRateSampleBytes: successful transfers smaller than this do not
	// move a node's rate (latency dominates them) but still count as a
	// success for its health.
	MinRateSampleBytes uint64
	// RateAlpha is the EWMA weight of a new rate sample.
	RateAlpha float64
	// Health tunes the probation of nodes reported failing.
	Health rank.HealthConfig
	// EtcdTimeout bounds each etcd request.
	EtcdTimeout time.Duration
	// OriginToken is the origin credential: a caller presenting it (in
	// nodeauth.OriginTokenHeader) may publish, unpublish and register an
	// origin. Empty: only origin certificates may (with mutual TLS).
	OriginToken string
	// AdminToken may do what OriginToken may, and replace or remove any
	// node. Empty: nobody by token.
	AdminToken string
	// JoinToken, when set, must be presented (nodeauth.JoinTokenHeader)
	// to register, unless the caller has a cluster certificate or the
	// origin credential. Empty: anyone may join as a cachenode or an edge.
	JoinToken string
	// ProbeNodes makes the tracker rank only nodes that answer its own
	// probe (probe.go). The tracker binary and p2pd turn it on; the zero
	// Config has it off, for tests whose nodes listen nowhere.
	ProbeNodes bool
	// ProbeDialOptions dial nodes for probes (transport security).
	ProbeDialOptions []grpc.DialOption
	// MaxNodes bounds live registrations in total.
	MaxNodes int
	// MaxNodesPerAddr bounds live registrations made from one source
	// address (negative: no bound).
	MaxNodesPerAddr int
	// Now is the clock for health backoff and timestamps.
	Now func() time.Time
	// Logger receives the tracker's logs.
	Logger *slog.Logger
}

// applyDefaults fills unset fields:
//   - Prefix "/p2pd/v1/", the layout in docs/architecture.md;
//   - LeaseTTL 10s: nodes heartbeat every ~3s, so one lost heartbeat is
//     harmless, and a dead node is gone in 10s;
//   - CommandTTL 1h: a node restarted within the hour still purges
//     what it must not serve; commands are tiny and rare;
//   - MaxLocateChunks 1024: a 1 GiB run at 1 MiB chunks, a few KiB of reply;
//   - DefaultMaxSources 4, MaxSourcesCap 32: enough to fetch in parallel
//     and fail over, without sending the whole membership per chunk;
//   - MaxHavesPerAnnounce 128: etcd's default --max-txn-ops, since one
//     Announce is one transaction;
//   - MaxAnnounceBytes 1 MiB: under etcd's default 1.5 MiB request limit;
//   - MaxChunkCount 1<<24: 16 TiB at 1 MiB chunks, a 2 MiB bitmap;
//   - MaxRateSamples 1024;
//   - MinRateSampleBytes 64 KiB;
//   - RateAlpha rank.DefaultAlpha;
//   - Health: rank's defaults;
//   - EtcdTimeout 5s;
//   - MaxNodes 10000, MaxNodesPerAddr 64: a host runs a few nodes, and a
//     flood of fake registrations from one address stops well before it
//     crowds out the honest ones;
//   - Now time.Now, Logger slog.Default().
func (c *Config) applyDefaults() {
	if c.Prefix == "" {
		c.Prefix = "/p2pd/v1/"
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 10 * time.Second
	}
	if c.CommandTTL <= 0 {
		c.CommandTTL = time.Hour
	}
	if c.MaxLocateChunks == 0 {
		c.MaxLocateChunks = 1024
	}
	if c.DefaultMaxSources == 0 {
		c.DefaultMaxSources = 4
	}
	if c.MaxSourcesCap == 0 {
		c.MaxSourcesCap = 32
	}
	if c.MaxHavesPerAnnounce <= 0 {
		c.MaxHavesPerAnnounce = 128
	}
	if c.MaxAnnounceBytes <= 0 {
		c.MaxAnnounceBytes = 1 << 20
	}
	if c.MaxChunkCount == 0 {
		c.MaxChunkCount = 1 << 24
	}
	if c.MaxRateSamples <= 0 {
		c.MaxRateSamples = 1024
	}
	if c.MinRateSampleBytes == 0 {
		c.MinRateSampleBytes = 64 << 10
	}
	if c.RateAlpha <= 0 || c.RateAlpha > 1 {
		c.RateAlpha = rank.DefaultAlpha
	}
	if c.EtcdTimeout <= 0 {
		c.EtcdTimeout = 5 * time.Second
	}
	if len(c.ProbeDialOptions) == 0 {
		c.ProbeDialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	if c.MaxNodes <= 0 {
		c.MaxNodes = 10000
	}
	if c.MaxNodesPerAddr == 0 {
		c.MaxNodesPerAddr = 64
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// EtcdConfig says where the tracker's state lives: an external etcd
// cluster (Endpoints) or a member embedded in this process (EmbeddedDir).
// Exactly one of them must be set.
type EtcdConfig struct {
	// Endpoints of an external etcd cluster (host:port).
	Endpoints []string
	// EmbeddedDir, when set, starts an embedded single-member etcd keeping
	// its data there.
	EmbeddedDir string
	// EmbeddedClientAddr and EmbeddedPeerAddr are where the embedded member
	// listens.
	EmbeddedClientAddr string
	EmbeddedPeerAddr   string
	// StartTimeout bounds waiting for the embedded member to be ready.
	StartTimeout time.Duration
}

// applyDefaults fills unset fields:
//   - EmbeddedClientAddr 127.0.0.1:2379 and EmbeddedPeerAddr
//     127.0.0.1:2380, etcd's usual ports, on loopback since nothing but
//     this process needs them;
//   - StartTimeout 1m: a member replaying a large WAL takes a while.
func (c *EtcdConfig) applyDefaults() {
	if c.EmbeddedClientAddr == "" {
		c.EmbeddedClientAddr = "127.0.0.1:2379"
	}
	if c.EmbeddedPeerAddr == "" {
		c.EmbeddedPeerAddr = "127.0.0.1:2380"
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = time.Minute
	}
}
