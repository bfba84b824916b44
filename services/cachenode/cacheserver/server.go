// Package cacheserver is a cachenode: it serves verified chunks from its
// disk store over SPP and, on a miss, fetches them from the sources the
// tracker ranks (peer cachenodes holding them, the origin otherwise),
// verifying each chunk, storing it and announcing its holdings.
//
// The story of one request (Fetch): chunks are sent in request order; held
// chunks are read from the store and verified again; misses are fetched a
// few chunks ahead of the one being sent, one upstream stream per run of
// chunks with the same best source, so a chunk is sent as soon as it is
// verified while the next ones are already on their way. Every concurrent
// request for the same chunk waits on the one fetch in flight.
package cacheserver

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	"github.com/p2pd/p2pd/internal/chunkcache"
	"github.com/p2pd/p2pd/internal/chunkstore"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/rank"
	"github.com/p2pd/p2pd/internal/spp"
	"github.com/p2pd/p2pd/services/tracker/trackerclient"
	"github.com/prometheus/client_golang/prometheus"
)

// Server is a cachenode. Its state is split by job, each part a type in
// its own file:
//
//   - serving SPP (fetch.go, local.go) uses the store and memory cache here;
//   - fetching: chunk flights, link estimates and read-ahead (upstream.go,
//     swarm.go, prefetch.go);
//   - known manifests and their fetches (manifest.go);
//   - membership: registration, holdings, load and rate reports
//     (membership.go);
//   - housekeeping: background work and shutdown (lifecycle.go), sweeping
//     unpublished files (unpublished.go), operators' commands (commands.go).
type Server struct {
	sppv1.UnimplementedChunkServiceServer
	cfg     Config
	log     *slog.Logger
	store   *chunkstore.Store
	tracker *trackerclient.Client
	pool    *spp.Pool
	// peers is each source's progress over all its streams: a busy
	// source is told from a stalled one (spp.Stall).
	peers   spp.Peers
	metrics *metrics
	tiers   *tierMetrics
	hot     *chunkcache.Cache // verified chunks in memory, nil when off

	lifecycle
	fetching
	known
	membership
	prewarms  prewarms
	purges    purgeLog
	putErrLog atomic.Int64 // unix nanos of the last store error logged
}

// New returns a cachenode serving store. tracker locates sources and
// records membership; with a nil tracker the node serves only what it
// holds. pool dials other nodes. Metrics are registered on reg if not nil.
func New(cfg Config, store *chunkstore.Store, tracker *trackerclient.Client, pool *spp.Pool, reg prometheus.Registerer) (*Server, error) {
	cfg.applyDefaults()
	if store == nil {
		return nil, errors.New("cacheserver: no chunk store")
	}
	if pool == nil && tracker != nil {
		return nil, errors.New("cacheserver: no connection pool")
	}
	hot := chunkcache.New(cfg.MemoryCacheBytes)
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger.With("node", cfg.NodeID),
		store:    store,
		tracker:  tracker,
		pool:     pool,
		metrics:  newMetrics(reg, store, hot),
		tiers:    newTierMetrics(reg),
		hot:      hot,
		fetching: fetching{flights: flights{m: map[chunkKey]*chunkFlight{}}, health: rank.NewHealths(rank.HealthConfig{}, nil)},
		known:    known{manifests: manifestCache{max: cfg.ManifestCache, m: map[manifest.Digest]*manifest.Manifest{}}},
		membership: membership{
			started: time.Now(),
			rates:   trackerclient.NewReporter(),
			dirty:   dirtySet{m: map[manifest.Digest]bool{}},
		},
	}
	s.lifecycle.start(cfg.StoreConcurrency)
	store.OnChange(s.dirty.mark)
	return s, nil
}

// Run joins the tracker as a cachenode, announcing everything the store
// holds, then keeps the tracker informed of holdings and measured rates
// until ctx ends. It then leaves the tracker, cancels upstream fetches and
// waits for background work to end.
func (s *Server) Run(ctx context.Context) error {
	defer s.Close()
	s.dropOrphans()
	if s.tracker == nil {
		<-ctx.Done()
		return nil
	}
	m := s.tracker.Join(ctx, s.Node(), s.Haves)
	s.member.Store(m)
	defer func() {
		s.member.Store(nil)
		m.Close()
	}()
	s.log.Info("joining tracker", "held_bytes", s.store.Bytes(), "files", len(s.store.Roots()))
	// Operators' commands (purge, prewarm) until Run returns; stopped
	// before Close, which waits for background work.
	cctx, stopCommands := context.WithCancel(ctx)
	defer stopCommands()
	s.background(func() { s.followCommands(cctx) })

	announce := time.NewTicker(s.cfg.AnnounceInterval)
	defer announce.Stop()
	report := time.NewTicker(s.cfg.RateReportInterval)
	defer report.Stop()
	sweep := time.NewTicker(s.cfg.SweepInterval)
	defer sweep.Stop()
	var sw sweeper
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.RPCTimeout)
			s.flushRates(fctx)
			cancel()
			return nil
		case <-announce.C:
			s.flushHoldings(m)
		case <-report.C:
			s.flushRates(ctx)
		case <-sweep.C:
			s.sweep(ctx, &sw)
		}
	}
}

// dropOrphans deletes chunks whose manifest is gone: they can be neither
// announced (the chunk count is unknown) nor verified.
func (s *Server) dropOrphans() {
	for _, root := range s.store.Roots() {
		if _, err := s.localManifest(root); err != nil {
			s.log.Warn("dropping chunks without a manifest", "root", root, "err", err)
			s.dropFile(root)
		}
	}
}

// storeFailed logs a chunk that could not be stored, at most every 10 s:
// a full disk would otherwise log every chunk served through.
func (s *Server) storeFailed(root manifest.Digest, idx int, err error) {
	s.metrics.storeErrors.Inc()
	now := time.Now().UnixNano()
	last := s.putErrLog.Load()
	if now-last < int64(10*time.Second) || !s.putErrLog.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn("cannot store chunk; serving without caching", "root", root, "chunk", idx, "err", err)
}

// errUnknownFile reports a root or name no source knows.
var errUnknownFile = errors.New("unknown file")

// errAbandoned lands a flight whose fetch was given up by its owner (a
// read-ahead nobody needs any more, a server shutting down) rather than
// failed by its sources: whoever still waits fetches the chunk again.
var errAbandoned = errors.New("fetch abandoned")
