package cacheserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/spp"
	"github.com/p2pd/p2pd/internal/telemetry"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// sourceRoles are the nodes a cachenode fetches from: never edges.
var sourceRoles = []trackerv1.Role{trackerv1.Role_ROLE_ORIGIN, trackerv1.Role_ROLE_CACHENODE}

// source is a node to fetch from.
type source struct {
	id, addr string
	label    string // metrics label: peer or origin
}

// sources returns the usable ranked sources of chunk j of a Locate answer.
// We ask peers with local_only set (a miss must not cascade through the
// swarm), so a cachenode that does not hold the chunk is useless; an
// origin holds every published chunk whether or not it announced it.
func (s *Server) sources(resp *trackerv1.LocateResponse, j int) []source {
	if j >= len(resp.Chunks) {
		return nil
	}
	cs := resp.Chunks[j]
	var out []source
	for k, ni := range cs.NodeIndex {
		if int(ni) >= len(resp.Nodes) {
			continue
		}
		n := resp.Nodes[ni]
		if n.Id == s.cfg.NodeID || n.GrpcAddr == "" {
			continue
		}
		held := k < len(cs.Held) && cs.Held[k]
		label := sourcePeer
		if n.Role == trackerv1.Role_ROLE_ORIGIN {
			label = sourceOrigin
		} else if !held {
			continue
		}
		out = append(out, source{id: n.Id, addr: n.GrpcAddr, label: label})
	}
	return out
}

type chunkKey struct {
	root manifest.Digest
	idx  int
}

// flight is one upstream fetch of a chunk; every request for the chunk
// meanwhile waits on it instead of fetching again.
type flight struct {
	done   chan struct{}
	data   []byte // verified
	source string // where the bytes came from (metrics label)
	err    error
}

func (f *flight) land(data []byte, source string, err error) {
	f.data, f.source, f.err = data, source, err
	close(f.done)
}

// flights are the chunk fetches in progress.
type flights struct {
	mu sync.Mutex
	m  map[chunkKey]*flight
}

// claim returns the flight for k to wait on, and whether the caller owns
// it (must fetch the chunk and land the flight). It returns nil when the
// store holds the chunk.
//
// A flight stays registered until its chunk is stored, and the store is
// checked under the same lock: a request that misses a flight by a hair
// finds the chunk in the store instead of fetching it a second time.
func (s *Server) claim(k chunkKey) (f *flight, owner bool) {
	s.flights.mu.Lock()
	defer s.flights.mu.Unlock()
	if f := s.flights.m[k]; f != nil {
		return f, false
	}
	if s.store.Has(k.root, k.idx) {
		return nil, false
	}
	f = &flight{done: make(chan struct{})}
	s.flights.m[k] = f
	return f, true
}

func (s *Server) release(k chunkKey, f *flight) {
	s.flights.mu.Lock()
	defer s.flights.mu.Unlock()
	if s.flights.m[k] == f {
		delete(s.flights.m, k)
	}
}

// want is one chunk an upstream fetch must bring.
type want struct {
	idx   int
	f     *flight
	cands []source
	next  int // index into cands of the source to ask
	start time.Time
}

// fetchRun fetches chunks the caller owns flights for, landing every one
// of them (with the verified bytes or an error). Chunks are located once,
// then consecutive chunks with the same best source share one stream;
// streams to different sources run in parallel.
func (s *Server) fetchRun(ctx context.Context, m *manifest.Manifest, ws []*want) {
	defer func() {
		for _, w := range ws {
			select {
			case <-w.f.done:
			default: // only on a bug or panic: never leave waiters hanging
				s.fail(m, w, errors.New("fetch abandoned"))
			}
		}
	}()
	if err := s.locate(ctx, m, ws); err != nil {
		for _, w := range ws {
			s.fail(m, w, err)
		}
		return
	}
	var wg sync.WaitGroup
	s.fetchGroups(ctx, &wg, m, ws)
	wg.Wait()
}

// locate fills the candidate sources of ws, one Locate per run of
// consecutive chunk indices.
func (s *Server) locate(ctx context.Context, m *manifest.Manifest, ws []*want) error {
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

// fetchGroups starts one stream per run of consecutive wants sharing
// their next source. Wants with no source left fail.
func (s *Server) fetchGroups(ctx context.Context, wg *sync.WaitGroup, m *manifest.Manifest, ws []*want) {
	var group []*want
	flush := func() {
		if len(group) > 0 {
			g := group
			wg.Go(func() { s.fetchGroup(ctx, wg, m, g) })
			group = nil
		}
	}
	for _, w := range ws {
		if len(w.cands) == 0 {
			s.fail(m, w, errors.New("no node holds it"))
			continue
		}
		if w.next >= len(w.cands) {
			s.fail(m, w, fmt.Errorf("all %d sources failed", len(w.cands)))
			continue
		}
		if len(group) > 0 && group[0].cands[group[0].next].id != w.cands[w.next].id {
			flush()
		}
		group = append(group, w)
	}
	flush()
}

// fetchGroup fetches ws from their common next source. On failure the
// chunks not delivered move on to their next-ranked source.
func (s *Server) fetchGroup(ctx context.Context, wg *sync.WaitGroup, m *manifest.Manifest, ws []*want) {
	src := ws[0].cands[ws[0].next]
	start := time.Now()
	sctx, span := telemetry.StartFetch(ctx, src.id, src.label, ws[0].idx, len(ws))
	delivered, bytes, err := s.stream(sctx, m, src, ws)
	span.End(delivered, bytes, err)
	if err == nil {
		s.rates.add(src.id, bytes, time.Since(start), false)
		return
	}
	// A peer that no longer holds a chunk (evicted since it announced) is
	// not unhealthy; anything else counts against it.
	s.rates.add(src.id, bytes, time.Since(start), status.Code(err) != codes.NotFound)
	s.metrics.upstreamFails.WithLabelValues(src.label).Inc()
	if errors.Is(err, manifest.ErrDigestMismatch) {
		s.metrics.digestFailures.Inc()
	}
	rest := ws[delivered:]
	s.log.Warn("upstream fetch failed; trying next source", "root", m.Root, "from", src.id, "chunk", rest[0].idx, "remaining", len(rest), "err", err)
	for _, w := range rest {
		w.next++
	}
	s.fetchGroups(ctx, wg, m, rest)
}

// stream fetches ws from src over one SPP stream. It returns how many
// chunks it delivered (a prefix of ws) and their bytes.
func (s *Server) stream(ctx context.Context, m *manifest.Manifest, src source, ws []*want) (int, int64, error) {
	c, err := s.pool.Client(src.addr)
	if err != nil {
		return 0, 0, err
	}
	idxs := make([]uint32, len(ws))
	for i, w := range ws {
		idxs[i] = uint32(w.idx)
	}
	r, err := spp.Open(ctx, c, m, &sppv1.FetchRequest{
		Root:      m.Root[:],
		Chunks:    idxs,
		LocalOnly: true,
		Requester: s.cfg.NodeID,
	}, s.cfg.StallTimeout)
	if err != nil {
		return 0, 0, err
	}
	defer r.Close()
	var bytes int64
	for i := range ws {
		// A fresh buffer per chunk: waiters keep it after we land it.
		_, data, err := r.Next(nil)
		if err != nil {
			if err == io.EOF {
				err = fmt.Errorf("stream ended after %d of %d chunks", i, len(ws))
			}
			return i, bytes, err
		}
		bytes += int64(len(data))
		s.deliver(m, ws[i], data, src)
	}
	return len(ws), bytes, nil
}

// deliver hands a verified chunk to its waiters, then stores it. A chunk
// that cannot be stored (disk full) has been served all the same.
//
// Stores run beside the stream, so an fsync does not hold up the next
// chunk, but at most StoreConcurrency at once: a slow disk slows fetching
// down instead of piling chunks up in memory.
func (s *Server) deliver(m *manifest.Manifest, w *want, data []byte, src source) {
	s.metrics.fetched.WithLabelValues(src.label).Add(float64(len(data)))
	s.metrics.fetchSeconds.WithLabelValues(src.label).Observe(time.Since(w.start).Seconds())
	w.f.land(data, src.label, nil)
	k := chunkKey{m.Root, w.idx}
	s.puts <- struct{}{}
	ok := s.background(func() {
		defer func() { <-s.puts }()
		if err := s.store.Put(m.Root, w.idx, data, m.Digests[w.idx]); err != nil {
			s.storeFailed(m.Root, w.idx, err)
		}
		// Only now: until the chunk is in the store, later requests must
		// find the flight, or they would fetch the chunk again.
		s.release(k, w.f)
	})
	if !ok {
		<-s.puts
		s.release(k, w.f)
	}
}

func (s *Server) fail(m *manifest.Manifest, w *want, err error) {
	w.f.land(nil, "", fmt.Errorf("chunk %d of %s: %w", w.idx, m.Root, err))
	s.release(chunkKey{m.Root, w.idx}, w.f)
}
