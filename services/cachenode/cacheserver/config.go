package cacheserver

import (
	"log/slog"
	"time"

	"github.com/p2pd/p2pd/internal/source"
)

// Config configures a cachenode.
type Config struct {
	// NodeID identifies the node to the tracker, and as requester to the
	// nodes it fetches from.
	NodeID string
	// Advertise is the host:port other nodes dial for SPP.
	Advertise string
	// HTTPAddr is the viewers' HTTP address, if this process also serves
	// it (the single p2pd binary); registered with the tracker.
	HTTPAddr string
	// OpsAddr is where other processes reach the ops listener (/metrics),
	// registered with the tracker so the admin API can read the node's
	// counters; empty when there is none.
	OpsAddr string
	// FetchMisses makes the node fetch the chunks it does not hold from
	// the tracker's ranked sources. The zero value serves only what the node
	// already holds, as the classic p2pd cache without -n.
	FetchMisses bool
	// StallTimeout abandons an upstream stream that delivers no piece for
	// this long; its remaining chunks are asked of the next source.
	StallTimeout time.Duration
	// Hedge is how long a source that holds what is asked may send
	// nothing at all — no manifest, not the first piece of a stream —
	// before the next source is asked the same as well (the first
	// verified copy wins). A holder reads from its disk and answers in
	// milliseconds, so this silence means a stopped or cut-off node long
	// before StallTimeout would say so. 0 means source.DefaultHedge.
	Hedge time.Duration
	// ReadAhead bounds how many chunks of one request are being fetched
	// ahead of the chunk being sent (memory per stream is about ReadAhead
	// chunks).
	ReadAhead int
	// Prefetch is how many chunks past the end of a sequential request
	// are fetched into the store before anyone asks for them, so the
	// viewer's next window is local when it comes. 0 means the default;
	// negative disables it.
	Prefetch int
	// PrefetchTrigger is the shortest run of consecutive chunks a request
	// must ask for to count as sequential playback. Edges start a stream
	// with a window of one or two chunks and ask for more only while the
	// viewer reads on, so a random seek never triggers read-ahead.
	PrefetchTrigger int
	// MaxPrefetch bounds the read-ahead chunks in flight on the node.
	MaxPrefetch int
	// MemoryCacheBytes keeps that many bytes of verified chunks in memory
	// in front of the store: hot chunks are served with no disk read and
	// no second digest. 0 means the default; negative disables it.
	MemoryCacheBytes int64
	// MaxSources is how many ranked sources per chunk are asked of the
	// tracker: the fallbacks when a source fails.
	MaxSources int
	// RPCTimeout bounds tracker calls and upstream GetManifest calls.
	RPCTimeout time.Duration
	// AnnounceInterval is how often changed holdings are handed to the
	// tracker member (which batches them again).
	AnnounceInterval time.Duration
	// RateReportInterval is how often measured transfer rates are sent to
	// the tracker.
	RateReportInterval time.Duration
	// SweepInterval is how often the node drops the chunks of files that
	// are no longer published (after two sweeps that miss a file).
	SweepInterval time.Duration
	// ManifestCache is how many parsed manifests are kept in memory.
	ManifestCache int
	// StoreConcurrency bounds the fetched chunks being written to the
	// store at once.
	StoreConcurrency int
	// Region is the node's region label: near peers share it, and only a
	// shield fetches from outside it (see tier.go).
	Region string
	// Shield marks the node as a gateway of its region: the region's
	// misses come through its shields.
	Shield bool
	// Parent is the id of the node this one joined in a p2pd tree (-S);
	// cachenodes with the same parent are one tier.
	Parent string
	// Parents are the caches above this node in a p2pd tree, nearest
	// first, without the server at the top. A miss no near peer holds is
	// fetched from them in order before anything else.
	Parents []Parent
	// Now is the clock of the node's memory of failed sources (how long
	// one stays on probation); time.Now when nil.
	Now func() time.Time
	// Logger receives the node's logs; slog.Default() when nil.
	Logger *slog.Logger
}

func (c *Config) applyDefaults() {
	if c.NodeID == "" {
		c.NodeID = "cachenode@" + c.Advertise
	}
	if c.StallTimeout <= 0 {
		// Shorter than the edge's 2 s: a cachenode waiting on a source
		// that went silent (a partition, a hung peer) must give up on it
		// and ask the next one before the edge waiting on this node gives
		// up on it in turn. With 5 s, the edge abandoned the healthy node
		// too and a partition cut viewers' responses (TestNetworkFaults,
		// docs/reliability.md). A loaded peer slow to start sending is
		// asked again elsewhere, not failed for good.
		c.StallTimeout = 1500 * time.Millisecond
	}
	if c.Hedge <= 0 {
		c.Hedge = source.DefaultHedge
	}
	if c.ReadAhead <= 0 {
		// 8 MiB per stream at the default chunk size: enough to keep a
		// fast link busy while the chunk ahead is verified and sent.
		c.ReadAhead = 8
	}
	if c.Prefetch == 0 {
		// The edge's largest window: its next request finds every chunk
		// local or on its way.
		c.Prefetch = 16
	}
	if c.PrefetchTrigger <= 0 {
		c.PrefetchTrigger = 4
	}
	if c.MaxPrefetch <= 0 {
		// 256 MiB at the default chunk size, over every viewer.
		c.MaxPrefetch = 256
	}
	if c.MemoryCacheBytes == 0 {
		// A few hundred hot chunks: enough for the head of every popular
		// file, small next to the disk store.
		c.MemoryCacheBytes = 256 << 20
	}
	if c.MaxSources <= 0 {
		c.MaxSources = 4
	}
	if c.RPCTimeout <= 0 {
		c.RPCTimeout = 5 * time.Second
	}
	if c.AnnounceInterval <= 0 {
		c.AnnounceInterval = 100 * time.Millisecond
	}
	if c.SweepInterval <= 0 {
		// An unpublished file's chunks go within half a minute; a viewer
		// streaming a just-replaced version has at least 15 s to finish.
		c.SweepInterval = 15 * time.Second
	}
	if c.RateReportInterval <= 0 {
		c.RateReportInterval = 2 * time.Second
	}
	if c.ManifestCache <= 0 {
		// A manifest is 32 bytes per chunk: 3.2 MB for a 100 GB file.
		c.ManifestCache = 256
	}
	if c.StoreConcurrency <= 0 {
		// A few writes in flight hide fsync latency; more only add memory.
		c.StoreConcurrency = 4
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}
