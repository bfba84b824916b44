package cacheserver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/rank"
	"github.com/p2pd/p2pd/internal/source"
	"github.com/p2pd/p2pd/services/tracker/trackerclient"
)

// sourceRoles are the nodes a cachenode fetches from: never edges.
var sourceRoles = []trackerv1.Role{trackerv1.Role_ROLE_ORIGIN, trackerv1.Role_ROLE_CACHENODE}

// upstream is a node to fetch from.
type upstream struct {
	source.Source
	label string // metrics label: peer, parent or origin
	class class  // holding peer, relay, parent, far holder or origin
	tier  string // where the source stands from here (tier.go)
}

// sources returns the usable ranked sources of chunk j of a Locate answer.
// We ask peers with local_only set (a miss must not cascade through the
// swarm), so a cachenode that does not hold the chunk is useless unless
// the tracker names it the chunk's relay; an origin holds every published
// chunk whether or not it announced it.
func (s *base) sources(resp *trackerv1.LocateResponse, j int) []upstream {
	var out []upstream
	relays := 0
	for _, src := range source.Ranked(resp, j, s.cfg.NodeID) {
		if u, ok := s.classify(src, &relays); ok {
			out = append(out, u)
		}
	}
	return s.withParents(out)
}

type chunkKey struct {
	root manifest.Digest
	idx  int
}

// chunkFlight is one upstream fetch of a chunk; every request for the chunk
// meanwhile waits on it instead of fetching again.
type chunkFlight struct {
	done   chan struct{}
	data   []byte // verified
	source string // where the bytes came from (metrics label)
	err    error
}

func (f *chunkFlight) land(data []byte, source string, err error) {
	f.data, f.source, f.err = data, source, err
	close(f.done)
}

// failed reports a flight that landed with an error but is not released
// yet: a waiter that retries must get a new flight, not this one again.
func (f *chunkFlight) failed() bool {
	select {
	case <-f.done:
		return f.err != nil
	default:
		return false
	}
}

// flights are the chunk fetches in progress.
type flights struct {
	mu sync.Mutex
	m  map[chunkKey]*chunkFlight
}

// claim returns the flight for k to wait on, and whether the caller owns
// it (must fetch the chunk and land the flight). It returns nil when the
// store holds the chunk.
//
// A flight stays registered until its chunk is stored, and the store is
// checked under the same lock: a request that misses a flight by a hair
// finds the chunk in the store instead of fetching it a second time.
func (s *fetcher) claim(k chunkKey) (f *chunkFlight, owner bool) {
	s.flights.mu.Lock()
	defer s.flights.mu.Unlock()
	if f := s.flights.m[k]; f != nil && !f.failed() {
		return f, false
	}
	if s.store.Has(k.root, k.idx) {
		return nil, false
	}
	f = &chunkFlight{done: make(chan struct{})}
	s.flights.m[k] = f
	return f, true
}

func (s *fetcher) release(k chunkKey, f *chunkFlight) {
	s.flights.mu.Lock()
	defer s.flights.mu.Unlock()
	if s.flights.m[k] == f {
		delete(s.flights.m, k)
	}
}

// fetchRun fetches chunks the caller owns flights for, landing every one
// of them (with the verified bytes or an error). Chunks are located once,
// then fetched from several sources at once (see swarm.go). relay lets
// the tracker send chunks nobody holds through their home cachenode; a
// node fetching on behalf of another through a relay request does not.
func (s *fetcher) fetchRun(ctx context.Context, m *manifest.Manifest, ws []*want, relay bool) {
	defer func() {
		for _, w := range ws {
			select {
			case <-w.f.done:
			default: // only on a bug or panic: never leave waiters hanging
				s.fail(m, w, errors.New("fetch abandoned"))
			}
		}
	}()
	if err := s.locate(ctx, m, ws, relay); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w: %w", errAbandoned, err)
		}
		for _, w := range ws {
			s.fail(m, w, err)
		}
		return
	}
	j := &job{s: s, ctx: ctx, m: m, wants: slices.Clone(ws)}
	j.run()
}

// locate fills the candidate sources of ws, one Locate per run of
// consecutive chunk indices.
func (s *fetcher) locate(ctx context.Context, m *manifest.Manifest, ws []*want, relay bool) error {
	if s.tracker == nil {
		return errors.New("no tracker to locate sources")
	}
	sorted := slices.Clone(ws)
	slices.SortFunc(sorted, func(a, b *want) int { return a.idx - b.idx })
	for i := 0; i < len(sorted); {
		j := i + 1
		for j < len(sorted) && sorted[j].idx == sorted[j-1].idx+1 {
			j++
		}
		run := sorted[i:j]
		lctx, cancel := context.WithTimeout(ctx, s.cfg.RPCTimeout)
		resp, err := s.tracker.Locate(lctx, &trackerv1.LocateRequest{
			Root:              m.Root[:],
			FirstChunk:        uint32(run[0].idx),
			ChunkCount:        uint32(len(run)),
			Requester:         s.cfg.NodeID,
			Roles:             sourceRoles,
			IncludeNonHolders: true,
			MaxSources:        uint32(s.cfg.MaxSources),
			// Below a parent, the parent is the tier's one way up.
			AllowRelay: relay && len(s.cfg.Parents) == 0,
		})
		cancel()
		if err != nil {
			return fmt.Errorf("locate chunks %d-%d of %s: %w", run[0].idx, run[len(run)-1].idx, m.Root, err)
		}
		for k, w := range run {
			w.cands = s.sources(resp, k)
		}
		i = j
	}
	return nil
}

// deliver hands a verified chunk to its waiters, then stores it. A chunk
// that cannot be stored (disk full) has been served all the same.
//
// Stores run beside the stream, so an fsync does not hold up the next
// chunk, but at most StoreConcurrency at once: a slow disk slows fetching
// down instead of piling chunks up in memory.
func (s *fetcher) deliver(m *manifest.Manifest, w *want, data []byte, src upstream) {
	s.metrics.fetched.WithLabelValues(src.label).Add(float64(len(data)))
	s.tiers.add(src, s.cfg.Region, len(data))
	s.metrics.fetchSeconds.WithLabelValues(src.label).Observe(time.Since(w.start).Seconds())
	// A chunk asked for before a purge of its file goes to whoever asked,
	// but is kept neither in memory nor in the store.
	if !s.purges.keep(m.Root, w.start, func() { s.hot.Add(m.Root, w.idx, data) }) {
		w.f.land(data, src.label, nil)
		s.release(chunkKey{m.Root, w.idx}, w.f)
		return
	}
	w.f.land(data, src.label, nil)
	k := chunkKey{m.Root, w.idx}
	s.puts <- struct{}{}
	ok := s.background(func() {
		defer func() { <-s.puts }()
		// Verified by the ChunkReader that received it.
		s.purges.keep(m.Root, w.start, func() {
			if err := s.store.PutVerified(m.Root, w.idx, data, m.Digests[w.idx]); err != nil {
				s.storeFailed(m.Root, w.idx, err)
			}
		})
		// Only now: until the chunk is in the store, later requests must
		// find the flight, or they would fetch the chunk again.
		s.release(k, w.f)
	})
	if !ok {
		<-s.puts
		s.release(k, w.f)
	}
}

func (s *fetcher) fail(m *manifest.Manifest, w *want, err error) {
	w.f.land(nil, "", fmt.Errorf("chunk %d of %s: %w", w.idx, m.Root, err))
	s.release(chunkKey{m.Root, w.idx}, w.f)
}

// fetcher brings the chunks the node misses from upstream: one flight per
// chunk on its way, what each link to a source has shown, and how many
// read-ahead chunks are in flight. Fetches run in the background of the
// node's lifecycle; verified chunks go to their waiters, the memory cache
// and the store.
type fetcher struct {
	*base
	*lifecycle
	tiers     *tierMetrics
	purges    *purgeLog               // a purged file's chunks are not kept
	rates     *trackerclient.Reporter // measured rates, reported by the membership
	putErrLog atomic.Int64            // unix nanos of the last store error logged
	flights   flights
	links     links
	prefetchN atomic.Int64
	// health remembers the sources that failed or stalled lately, across
	// jobs: a viewer's next read-ahead request does not wait on the same
	// silent peer again (rank.Health's backoff), unless it is the only
	// source left.
	health *rank.Healths
}

// storeFailed logs a chunk that could not be stored, at most every 10 s:
// a full disk would otherwise log every chunk served through.
func (s *fetcher) storeFailed(root manifest.Digest, idx int, err error) {
	s.metrics.storeErrors.Inc()
	now := time.Now().UnixNano()
	last := s.putErrLog.Load()
	if now-last < int64(10*time.Second) || !s.putErrLog.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn("cannot store chunk; serving without caching", "root", root, "chunk", idx, "err", err)
}

// fetchOpts tune one background fetch.
type fetchOpts struct {
	relay bool            // chunks nobody holds may come through their home
	abort context.Context // when it ends, the fetch is given up (nil: never)
	done  func()          // called when the fetch is over
}

// goFetch fetches ws in the background. The fetch keeps the request's
// values (trace context) but not its cancellation, since other requests
// may be waiting on the same chunks; it ends with the server, or when
// opts.abort ends, and its waiters then fetch again (errAbandoned). The
// function returned disarms opts.abort.
func (s *fetcher) goFetch(req context.Context, m *manifest.Manifest, ws []*want, opts fetchOpts) (disarm func() bool) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(req))
	stop := context.AfterFunc(s.life, cancel)
	stopAbort := func() bool { return false }
	if opts.abort != nil {
		stopAbort = context.AfterFunc(opts.abort, cancel)
	}
	ok := s.background(func() {
		defer cancel()
		defer stop()
		defer stopAbort()
		if opts.done != nil {
			defer opts.done()
		}
		s.fetchRun(ctx, m, ws, opts.relay)
	})
	if !ok {
		cancel()
		stop()
		stopAbort()
		if opts.done != nil {
			opts.done()
		}
		for _, w := range ws {
			s.fail(m, w, errors.New("cachenode shutting down"))
		}
	}
	return stopAbort
}
