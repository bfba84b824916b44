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
	"sync"
	"sync/atomic"
	"time"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/chunkcache"
	"github.com/p2pd/p2pd/internal/chunkstore"
	"github.com/p2pd/p2pd/internal/flight"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/spp"
	"github.com/p2pd/p2pd/services/tracker/trackerclient"
	"github.com/prometheus/client_golang/prometheus"
)

// Server is a cachenode's SPP service and tracker membership.
type Server struct {
	sppv1.UnimplementedChunkServiceServer
	cfg     Config
	log     *slog.Logger
	store   *chunkstore.Store
	tracker *trackerclient.Client
	pool    *spp.Pool
	metrics *metrics
	tiers   *tierMetrics
	started time.Time

	// life bounds upstream fetches: they outlive the request that started
	// them (other requests may be waiting on them) but not the server.
	life context.Context
	stop context.CancelFunc
	// bg counts background work (fetches, stores), so shutdown can wait
	// for it; closed refuses new work once shutdown began.
	bgMu   sync.Mutex
	bg     sync.WaitGroup
	closed bool
	puts   chan struct{} // semaphore of stores in progress

	flights   flights
	hot       *chunkcache.Cache // verified chunks in memory, nil when off
	links     links
	prefetchN atomic.Int64 // read-ahead chunks in flight
	manifests manifestCache
	prewarms  prewarms
	purges    purgeLog
	mflights  flight.Group[*manifest.Manifest]
	rates     *trackerclient.Reporter
	dirty     dirtySet
	member    atomic.Pointer[trackerclient.Member]
	active    atomic.Int64
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
		cfg:       cfg,
		log:       cfg.Logger.With("node", cfg.NodeID),
		store:     store,
		tracker:   tracker,
		pool:      pool,
		metrics:   newMetrics(reg, store, hot),
		tiers:     newTierMetrics(reg),
		hot:       hot,
		started:   time.Now(),
		flights:   flights{m: map[chunkKey]*chunkFlight{}},
		manifests: manifestCache{max: cfg.ManifestCache, m: map[manifest.Digest]*manifest.Manifest{}},
		rates:     trackerclient.NewReporter(),
		dirty:     dirtySet{m: map[manifest.Digest]bool{}},
	}
	s.life, s.stop = context.WithCancel(context.Background())
	s.puts = make(chan struct{}, cfg.StoreConcurrency)
	store.OnChange(s.dirty.mark)
	return s, nil
}

// Node describes this cachenode for tracker registration.
func (s *Server) Node() *trackerv1.Node {
	return &trackerv1.Node{
		Id:              s.cfg.NodeID,
		Role:            trackerv1.Role_ROLE_CACHENODE,
		GrpcAddr:        s.cfg.Advertise,
		HttpAddr:        s.cfg.HTTPAddr,
		OpsAddr:         s.cfg.OpsAddr,
		CapacityBytes:   uint64(s.store.MaxBytes()),
		HeldBytes:       uint64(s.store.Bytes()),
		Load:            uint32(s.active.Load()),
		UpSinceUnixNano: s.started.UnixNano(),
		Region:          s.cfg.Region,
		Shield:          s.cfg.Shield,
		Parent:          s.cfg.Parent,
	}
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

// Close cancels upstream fetches and waits for background work to end;
// requests still being served then fail their misses. Run closes the
// server when it returns; Close is for a server that never ran.
func (s *Server) Close() {
	s.bgMu.Lock()
	s.closed = true
	s.bgMu.Unlock()
	s.stop()
	s.bg.Wait()
}

// background runs f in a goroutine Close waits for. It reports false, and
// does not run f, once Close has begun.
func (s *Server) background(f func()) bool {
	s.bgMu.Lock()
	defer s.bgMu.Unlock()
	if s.closed {
		return false
	}
	s.bg.Go(f)
	return true
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

// Haves returns the node's full holdings, one Have per file; the tracker
// member sends them after every (re-)registration.
func (s *Server) Haves() []*trackerv1.Have {
	roots := s.store.Roots()
	hs := make([]*trackerv1.Have, 0, len(roots))
	for _, root := range roots {
		if h := s.have(root); h != nil {
			hs = append(hs, h)
		}
	}
	return hs
}

// have returns the holdings of root, nil when its manifest is unknown.
func (s *Server) have(root manifest.Digest) *trackerv1.Have {
	m, err := s.localManifest(root)
	if err != nil {
		return nil
	}
	h := &trackerv1.Have{Root: root[:], ChunkCount: uint32(m.ChunkCount())}
	// An empty bitmap removes the node's record for the file.
	if b := s.store.Held(root, m.ChunkCount()); b.Count() > 0 {
		h.Bitmap = b.Encode()
	}
	return h
}

// dirtySet collects the roots whose holdings changed since the last flush,
// so a burst of puts becomes one bitmap per file.
type dirtySet struct {
	mu sync.Mutex
	m  map[manifest.Digest]bool
}

func (d *dirtySet) mark(root manifest.Digest) {
	d.mu.Lock()
	d.m[root] = true
	d.mu.Unlock()
}

func (d *dirtySet) take() []manifest.Digest {
	d.mu.Lock()
	defer d.mu.Unlock()
	roots := make([]manifest.Digest, 0, len(d.m))
	for r := range d.m {
		roots = append(roots, r)
		delete(d.m, r)
	}
	return roots
}

func (s *Server) flushHoldings(m *trackerclient.Member) {
	roots := s.dirty.take()
	if len(roots) == 0 {
		return
	}
	for _, root := range roots {
		if h := s.have(root); h != nil {
			m.Update(h)
		}
	}
	m.SetLoad(uint32(s.active.Load()), uint64(s.store.Bytes()))
}

// streamStarted and streamEnded count served streams: the load the
// tracker ranks nodes by.
func (s *Server) streamStarted() {
	n := s.active.Add(1)
	s.metrics.active.Set(float64(n))
	if m := s.member.Load(); m != nil {
		m.SetLoad(uint32(n), uint64(s.store.Bytes()))
	}
}

func (s *Server) streamEnded() {
	n := s.active.Add(-1)
	s.metrics.active.Set(float64(n))
	if m := s.member.Load(); m != nil {
		m.SetLoad(uint32(n), uint64(s.store.Bytes()))
	}
}

func (s *Server) flushRates(ctx context.Context) {
	m := s.member.Load()
	if m == nil {
		return // not joined: nobody to report as
	}
	samples := s.rates.Take()
	if len(samples) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RPCTimeout)
	defer cancel()
	// Through the membership: a report carries the registration's secret.
	if _, err := m.ReportRate(ctx, &trackerv1.ReportRateRequest{Samples: samples}); err != nil {
		s.log.Debug("report rates", "err", err)
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
