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
	"time"

	"github.com/p2pd/p2pd/internal/chunkcache"
	"github.com/p2pd/p2pd/internal/chunkstore"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/rank"
	"github.com/p2pd/p2pd/internal/spp"
	"github.com/p2pd/p2pd/services/tracker/trackerclient"
	"github.com/prometheus/client_golang/prometheus"
)

// Server is a cachenode, a thin composition of parts split by job, each
// a type in its own file:
//
//   - serving SPP and in-process streams (fetch.go, local.go, manifest.go);
//   - fetching misses: chunk flights, the swarm scheduler, read-ahead
//     (upstream.go, swarm.go, prefetch.go, tier.go);
//   - known manifests and their fetches (manifest.go);
//   - membership: registration, holdings, load and rate reports
//     (membership.go);
//   - housekeeping: background work, shutdown and chunks without a
//     manifest (lifecycle.go), sweeping unpublished files
//     (unpublished.go), operators' commands (commands.go).
//
// Every part shares the node's base; Run ties them together. Every part's
// methods name their receiver s, for "this node".
type Server struct {
	*base
	*known
	*serving
	*membership
	*housekeeping
	fetcher *fetcher
}

// base is what every part of the node shares: its configuration, logger,
// chunk store, memory cache, metrics, and its ways to the tracker and the
// other nodes.
type base struct {
	cfg     Config
	log     *slog.Logger
	store   *chunkstore.Store
	tracker *trackerclient.Client
	pool    *spp.Pool
	// peers is each source's progress over all its streams: a busy
	// source is told from a stalled one (spp.Stall).
	peers   spp.Peers
	metrics *metrics
	hot     *chunkcache.Cache // verified chunks in memory, nil when off
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
	b := &base{
		cfg:     cfg,
		log:     cfg.Logger.With("node", cfg.NodeID),
		store:   store,
		tracker: tracker,
		pool:    pool,
		metrics: newMetrics(reg, store, hot),
		hot:     hot,
	}
	life := &lifecycle{}
	life.start(cfg.StoreConcurrency)
	rates := trackerclient.NewReporter()
	health := rank.NewHealths(rank.HealthConfig{}, cfg.Now)
	kn := &known{base: b, manifests: manifestCache{max: cfg.ManifestCache, m: map[manifest.Digest]*manifest.Manifest{}}, health: health, rates: rates}
	purges := &purgeLog{}
	fe := &fetcher{
		base:      b,
		lifecycle: life,
		tiers:     newTierMetrics(reg),
		purges:    purges,
		rates:     rates,
		flights:   flights{m: map[chunkKey]*chunkFlight{}},
		health:    health,
	}
	mb := &membership{
		base:    b,
		known:   kn,
		started: time.Now(),
		rates:   rates,
		dirty:   dirtySet{m: map[manifest.Digest]bool{}},
	}
	s := &Server{
		base:         b,
		known:        kn,
		serving:      &serving{base: b, known: kn, fetcher: fe, members: mb},
		membership:   mb,
		housekeeping: &housekeeping{base: b, known: kn, lifecycle: life, fetcher: fe, purges: purges},
		fetcher:      fe,
	}
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

// errUnknownFile reports a root or name no source knows.
var errUnknownFile = errors.New("unknown file")

// errAbandoned lands a flight whose fetch was given up by its owner (a
// read-ahead nobody needs any more, a server shutting down) rather than
// failed by its sources: whoever still waits fetches the chunk again.
var errAbandoned = errors.New("fetch abandoned")
