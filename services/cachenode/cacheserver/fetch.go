package cacheserver

import (
	"context"
	"errors"
	"time"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	"github.com/p2pd/p2pd/internal/chunkstore"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/spp"
	"github.com/p2pd/p2pd/internal/telemetry"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// serving answers requests for chunks and manifests: over SPP (Fetch,
// GetManifest) and in process (Stream). Held chunks come from memory or
// the store; misses are the fetcher's.
type serving struct {
	sppv1.UnimplementedChunkServiceServer
	*base
	*known
	fetcher *fetcher
	members *membership // counts the streams served: the node's load
}

// Fetch implements SPP: streams the requested chunks in request order.
// Held chunks are verified again as they are read; misses are fetched
// (unless the request is local_only or the node does not fetch) and sent
// as soon as they are verified.
func (s *serving) Fetch(req *sppv1.FetchRequest, stream grpc.ServerStreamingServer[sppv1.FetchResponse]) error {
	ctx := stream.Context()
	root, err := manifest.DigestFromBytes(req.Root)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "root: %v", err)
	}
	if len(req.Chunks) > spp.MaxChunksPerFetch {
		return status.Errorf(codes.InvalidArgument, "%d chunks requested, at most %d per fetch", len(req.Chunks), spp.MaxChunksPerFetch)
	}
	fetch := s.cfg.FetchMisses && !req.LocalOnly && s.tracker != nil
	m, err := s.manifest(ctx, root, fetch)
	if err != nil {
		return manifestStatus(err)
	}
	for _, idx := range req.Chunks {
		if int(idx) >= m.ChunkCount() {
			return status.Errorf(codes.InvalidArgument, "chunk %d out of range: %s has %d chunks", idx, root, m.ChunkCount())
		}
	}
	s.members.streamStarted()
	defer s.members.streamEnded()
	spp.Accepted(stream) // alive, whatever the chunks take (see ChunkReader.Responded)
	start := time.Now()
	// A relay request (another cachenode fetching through this one, the
	// chunk's home) is served without relaying further and without
	// read-ahead: the asker reads ahead on its own.
	relayed := len(metadata.ValueFromIncomingContext(ctx, spp.RelayHeader)) > 0
	p := &pipeline{s: s, ctx: ctx, m: m, fetch: fetch, relay: s.mayRelay(relayed, req.Region), slots: make([]slot, len(req.Chunks)),
		trace: startServe(ctx, root, req.Requester, len(req.Chunks))}
	for i, idx := range req.Chunks {
		p.slots[i].idx = int(idx)
	}
	sent, err := p.run(stream)
	p.trace.end(err)
	p.finish(err)
	s.log.Debug("fetch", "root", root, "chunks", len(req.Chunks), "sent", sent, "requester", req.Requester, "local_only", req.LocalOnly, "took", time.Since(start), "err", err)
	return err
}

// slot is one requested chunk on its way to the requester.
type slot struct {
	idx  int
	held bool         // read from the store when its turn comes
	read *storeRead   // or read ahead of its turn
	f    *chunkFlight // or brought by this fetch
}

// storeRead is a held chunk being read from the store ahead of its turn,
// so reading and verifying chunk k+1 overlaps sending chunk k.
type storeRead struct {
	done chan struct{}
	data []byte
	err  error
}

// pipeline serves one Fetch: it launches the fetches of misses up to
// ReadAhead chunks ahead of the chunk being sent.
type pipeline struct {
	s        *serving
	ctx      context.Context
	m        *manifest.Manifest
	fetch    bool
	relay    bool // misses may be fetched through their home cachenode
	slots    []slot
	launched int // slots before this one are read from the store or have a flight
	trace    *serveTrace
	// keepPrefetch, once read-ahead started, lets it go on after the
	// request: a request that ends early (a seek, the viewer gone)
	// cancels it instead.
	keepPrefetch func() bool
}

func (p *pipeline) run(stream grpc.ServerStreamingServer[sppv1.FetchResponse]) (int, error) {
	// bp is where a chunk read from the store lands when the memory cache
	// is off. Such a chunk is handed to gRPC with its buffer
	// (spp.SendBuffer), which may still be writing it when the next one
	// is read: the next one gets a buffer of its own. Any other chunk is
	// shared bytes nobody modifies (spp.SendChunk).
	var bp *[]byte
	defer func() { spp.Buffers.Put(bp) }()
	for i := range p.slots {
		if bp == nil {
			bp = spp.Buffers.Get(p.m.ChunkSize)
			*bp = (*bp)[:0]
		}
		data, src, err := p.next(i, bp)
		if err != nil {
			return i, err
		}
		if len(data) > 0 && &data[0] == &(*bp)[:1][0] {
			*bp = data
			err = spp.SendBuffer(stream, p.slots[i].idx, bp)
			bp = nil
		} else {
			err = spp.SendChunk(stream, p.slots[i].idx, data)
		}
		if err != nil {
			return i, err
		}
		p.sent(i, src, len(data))
	}
	return len(p.slots), nil
}

// next returns the verified bytes of slot i, which is the next one to go
// out, and where they came from. Misses are launched ahead of it.
func (p *pipeline) next(i int, bp *[]byte) ([]byte, string, error) {
	ra := p.s.cfg.ReadAhead
	// Misses are launched in segments of half the read-ahead, so each
	// upstream stream carries several chunks instead of one.
	seg := max(1, ra/2)
	for p.launched <= i || (p.launched < len(p.slots) && p.launched-i+min(seg, len(p.slots)-p.launched) <= ra) {
		p.launch(min(seg, len(p.slots)-p.launched))
	}
	data, src, err := p.obtain(&p.slots[i], bp)
	if err == nil && i == 0 {
		// Read ahead past the request only once its first chunk is
		// out, so it never competes with the first byte.
		p.keepPrefetch = p.s.fetcher.prefetch(p)
	}
	return data, src, err
}

// sent accounts for slot i, gone out with size bytes from src.
func (p *pipeline) sent(i int, src string, size int) {
	p.s.metrics.served.WithLabelValues(src).Add(float64(size))
	p.s.metrics.chunksServed.WithLabelValues(src).Inc()
	p.trace.chunk(p.slots[i].idx, src, size)
	p.slots[i].f = nil // let the chunk's memory go
}

// finish ends the request: the read-ahead it started goes on if it ended
// well, and is cancelled (when the request's context ends) if not.
func (p *pipeline) finish(err error) {
	if err == nil && p.keepPrefetch != nil {
		p.keepPrefetch()
	}
}

// launch classifies the next n slots: held, joining a fetch in flight, or
// fetched here; the chunks fetched here go out in one upstream run.
func (p *pipeline) launch(n int) {
	slots := p.slots[p.launched : p.launched+n]
	p.launched += n
	defer p.readAhead(slots)
	if !p.fetch {
		for i := range slots {
			slots[i].held = true
		}
		return
	}
	var owned []*want
	now := time.Now()
	for i := range slots {
		f, owner := p.s.fetcher.claim(chunkKey{p.m.Root, slots[i].idx})
		if f == nil {
			slots[i].held = true
			continue
		}
		slots[i].f = f
		if owner {
			owned = append(owned, &want{idx: slots[i].idx, f: f, start: now})
		}
	}
	if len(owned) > 0 {
		p.s.fetcher.goFetch(p.ctx, p.m, owned, fetchOpts{relay: p.relay})
	}
}

// readAhead starts reading the held slots that are on disk only. Reads go
// to buffers of their own, which the memory cache keeps: without it a
// held chunk is read into the request's one buffer when its turn comes.
func (p *pipeline) readAhead(slots []slot) {
	if p.s.hot == nil {
		return
	}
	for i := range slots {
		if !slots[i].held || p.s.hot.Contains(p.m.Root, slots[i].idx) {
			continue
		}
		rd := &storeRead{done: make(chan struct{})}
		slots[i].read = rd
		idx := slots[i].idx
		go func() {
			defer close(rd.done)
			rd.data, rd.err = p.s.held(p.m, idx, nil)
		}()
	}
}

// obtain returns the verified bytes of the slot's chunk and where they
// came from. Bytes read from the store land in *bp, reused by the next
// chunk, unless the memory cache keeps them; any other bytes are shared
// and must not be modified.
func (p *pipeline) obtain(sl *slot, bp *[]byte) ([]byte, string, error) {
	if sl.held {
		var data []byte
		var err error
		if rd := sl.read; rd != nil {
			select {
			case <-rd.done:
			case <-p.ctx.Done():
				return nil, "", status.FromContextError(p.ctx.Err()).Err()
			}
			data, err = rd.data, rd.err
			sl.read = nil
		} else {
			data, err = p.s.held(p.m, sl.idx, bp)
		}
		if err == nil {
			return data, sourceLocal, nil
		}
		if errors.Is(err, chunkstore.ErrCorrupt) {
			p.s.metrics.digestFailures.Inc()
			telemetry.DigestFailure(p.ctx, p.m.Root.String(), sl.idx)
			p.s.log.Warn("stored chunk damaged; removed", "root", p.m.Root, "chunk", sl.idx)
		} else if !errors.Is(err, chunkstore.ErrNotFound) {
			p.s.log.Warn("read stored chunk", "root", p.m.Root, "chunk", sl.idx, "err", err)
		}
		if !p.fetch {
			return nil, "", status.Errorf(codes.NotFound, "chunk %d of %s not held by this node", sl.idx, p.m.Root)
		}
		// Evicted or damaged since it was classified: fetch it now.
		if data, ok, err := p.refetch(sl, bp); ok || err != nil {
			return data, sourceLocal, err
		}
	}
	for attempt := 0; ; attempt++ {
		select {
		case <-sl.f.done:
		case <-p.ctx.Done():
			return nil, "", status.FromContextError(p.ctx.Err()).Err()
		}
		if sl.f.err == nil {
			return sl.f.data, sl.f.source, nil
		}
		if !errors.Is(sl.f.err, errAbandoned) || attempt >= 3 {
			return nil, "", status.Errorf(codes.Unavailable, "%v", sl.f.err)
		}
		// Whoever started the fetch gave up on it (a read-ahead the
		// viewer seeked away from) while this request waited: fetch it
		// for this request.
		if data, ok, err := p.refetch(sl, bp); ok || err != nil {
			return data, sourceLocal, err
		}
	}
}

// refetch claims the slot's chunk again: ok when the store has it after
// all (data is then its bytes), else sl.f is the flight to wait on.
func (p *pipeline) refetch(sl *slot, bp *[]byte) ([]byte, bool, error) {
	f, owner := p.s.fetcher.claim(chunkKey{p.m.Root, sl.idx})
	if f == nil {
		// Stored again meanwhile: one more try from the store.
		if data, err := p.s.held(p.m, sl.idx, bp); err == nil {
			return data, true, nil
		}
		return nil, false, status.Errorf(codes.Unavailable, "chunk %d of %s: store keeps failing", sl.idx, p.m.Root)
	}
	if owner {
		p.s.fetcher.goFetch(p.ctx, p.m, []*want{{idx: sl.idx, f: f, start: time.Now()}}, fetchOpts{relay: p.relay})
	}
	sl.f = f
	return nil, false, nil
}

// held returns the verified bytes of a chunk the node holds: from memory,
// else from the store (into *bp when the memory cache is off).
func (s *serving) held(m *manifest.Manifest, idx int, bp *[]byte) ([]byte, error) {
	if data, ok := s.hot.Get(m.Root, idx); ok {
		return data, nil
	}
	if s.hot == nil {
		data, err := s.store.Get(m.Root, idx, m.Digests[idx], *bp)
		if err == nil {
			*bp = data[:0]
		}
		return data, err
	}
	data, err := s.store.Get(m.Root, idx, m.Digests[idx], nil)
	if err == nil {
		s.hot.Add(m.Root, idx, data)
	}
	return data, err
}
