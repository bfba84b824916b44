package edgeserver

import (
	"context"
	"errors"
	"sync"

	"github.com/p2pd/p2pd/internal/manifest"
)

// Concurrent misses of one chunk cost one SPP fetch: a thousand viewers
// starting a cold file make the edge fetch (and verify) each chunk once,
// not once per viewer. A viewer that misses a chunk nobody fetches starts
// a sharedRun for it and the misses after it; a viewer that misses a chunk
// in flight waits for that run instead of opening a stream of its own.
//
// A run is fetched by a goroutine of its own, not by any one viewer, so a
// slow or paused viewer never holds back the others: it reads no further
// than runLead chunks past the furthest chunk a viewer waits for (memory
// stays a few chunks per run, as the reader's own read-ahead), and it
// stops when no viewer holds it any more. Its chunks go to the memory
// cache and straight to the viewers waiting for them; nothing else keeps
// them.

// runLead is how many chunks a run fetches past the furthest one a viewer
// asked for: enough to keep the stream busy while that chunk is sent.
const runLead = 2

var (
	// errAbandoned: every viewer of a run left before this chunk came;
	// a viewer that joined just then fetches it anew.
	errAbandoned = errors.New("shared fetch abandoned")
	// errGone: the chunk came while nobody waited for it and left the
	// memory cache since: fetch it anew.
	errGone = errors.New("shared chunk no longer held")
)

type runKey struct {
	root manifest.Digest
	idx  int
}

// sharedRun is one fetch of chunks first..last, shared by the viewers
// that miss them.
type sharedRun struct {
	s           *Server
	m           *manifest.Manifest
	first, last int
	cancel      context.CancelFunc
	wake        chan struct{} // a viewer asked for a further chunk

	mu        sync.Mutex
	refs      int // viewers holding the run
	abandoned bool
	want      int // the furthest chunk a viewer asked for
	chunks    []runChunk
}

// runChunk is one chunk of a run. Its bytes are kept only while viewers
// wait for them.
type runChunk struct {
	done    chan struct{}
	data    []byte
	err     error
	waiters int
}

// joinRun returns the run that fetches chunk first of m, with a hold on it
// that release gives back: nil when the chunk is in the memory cache after
// all (a run just ended), the one in flight, or a new one over first and
// the chunks after it up to end that are neither cached nor in flight
// (at most MaxWindow). A new run keeps ctx's values (the trace of the
// viewer that started it) but not its cancellation, and ends with the
// server.
func (s *Server) joinRun(ctx context.Context, m *manifest.Manifest, first, end int) *sharedRun {
	s.runsMu.Lock()
	defer s.runsMu.Unlock()
	if r := s.runs[runKey{m.Root, first}]; r != nil {
		r.mu.Lock()
		ok := !r.abandoned
		if ok {
			r.refs++
		}
		r.mu.Unlock()
		if ok {
			s.metrics.sharedMisses.Inc()
			return r
		}
	}
	if s.hot.Contains(m.Root, first) {
		// A run completes a chunk into the memory cache before it leaves
		// s.runs: fetching it again would waste a fetch.
		return nil
	}
	last := first
	for last < end && last-first+1 < s.cfg.MaxWindow && s.runs[runKey{m.Root, last + 1}] == nil && !s.hot.Contains(m.Root, last+1) {
		last++
	}
	r := &sharedRun{s: s, m: m, first: first, last: last, refs: 1, want: first,
		wake: make(chan struct{}, 1), chunks: make([]runChunk, last-first+1)}
	for i := range r.chunks {
		r.chunks[i].done = make(chan struct{})
		s.runs[runKey{m.Root, first + i}] = r
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(s.life, cancel)
	r.cancel = cancel
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		defer cancel()
		defer stop()
		r.fetch(runCtx)
	}()
	return r
}

// release gives back a hold from joinRun; the last one stops the fetch.
func (r *sharedRun) release() {
	r.mu.Lock()
	r.refs--
	last := r.refs == 0
	if last {
		r.abandoned = true
	}
	r.mu.Unlock()
	if last {
		r.cancel()
	}
}

// fetched reports whether the run holds chunk i and fetched it.
func (r *sharedRun) fetched(i int) bool {
	if i < r.first || i > r.last {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c := &r.chunks[i-r.first]
	select {
	case <-c.done:
		return c.err == nil
	default:
		return false
	}
}

// get returns chunk i of the run once it is verified; ctx bounds the
// wait, not the fetch.
func (r *sharedRun) get(ctx context.Context, i int) ([]byte, error) {
	r.mu.Lock()
	c := &r.chunks[i-r.first]
	select {
	case <-c.done:
		data, err := c.data, c.err
		r.mu.Unlock()
		if err == nil && data == nil {
			// It came before anyone waited for it: the memory cache
			// took it, unless it left since. Still this run's fetch,
			// not a hit.
			if data, ok := r.s.hot.Get(r.m.Root, i); ok {
				return data, nil
			}
			return nil, errGone
		}
		return data, err
	default:
	}
	c.waiters++
	if i > r.want {
		r.want = i
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
	r.mu.Unlock()
	var err error
	select {
	case <-c.done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	data := c.data
	if err == nil {
		err = c.err
	}
	if c.waiters--; c.waiters == 0 {
		c.data = nil // the memory cache has it, if it is worth keeping
	}
	if err != nil {
		return nil, err
	}
	return data, nil
}

// fetch streams the run's chunks from the nodes the tracker ranks, as a
// viewer's own stream would (failover, probation, verification), paced by
// what viewers ask for.
func (r *sharedRun) fetch(ctx context.Context) {
	fs := &failoverStream{s: r.s, m: r.m, ctx: ctx, next: r.first, last: r.last}
	defer fs.Close()
	for j := r.first; j <= r.last; j++ {
		if !r.demanded(ctx, j) {
			r.failFrom(j, errAbandoned)
			return
		}
		idx, data, err := fs.Next(nil)
		if err != nil {
			if ctx.Err() != nil {
				err = errAbandoned
			}
			r.failFrom(j, err)
			return
		}
		r.s.hot.Add(r.m.Root, idx, data)
		r.complete(idx, data, nil)
	}
}

// demanded waits until chunk j is at most runLead past the furthest chunk
// a viewer asked for; false when the run is abandoned first.
func (r *sharedRun) demanded(ctx context.Context, j int) bool {
	for {
		r.mu.Lock()
		ok := j <= r.want+runLead
		r.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-r.wake:
		case <-ctx.Done():
			return false
		}
	}
}

// complete ends chunk i: its bytes go to the viewers waiting for it, and
// the chunk is no longer in flight.
func (r *sharedRun) complete(i int, data []byte, err error) {
	r.mu.Lock()
	c := &r.chunks[i-r.first]
	if c.waiters > 0 {
		c.data = data
	}
	c.err = err
	close(c.done)
	r.mu.Unlock()
	k := runKey{r.m.Root, i}
	r.s.runsMu.Lock()
	if r.s.runs[k] == r {
		delete(r.s.runs, k)
	}
	r.s.runsMu.Unlock()
}

// failFrom ends chunks j..last with err.
func (r *sharedRun) failFrom(j int, err error) {
	for i := j; i <= r.last; i++ {
		r.complete(i, nil, err)
	}
}
