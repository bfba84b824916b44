package cacheserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/rank"
	"github.com/p2pd/p2pd/internal/spp"
	"github.com/p2pd/p2pd/internal/telemetry"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// The swarm: how a cachenode fetches a run of chunks it misses.
//
// Each chunk's usable sources come in classes, best first: peer
// cachenodes that hold it; the chunk's home, as a relay, when no peer
// holds it (it fetches the chunk once for the whole cluster); the origin.
// A chunk is fetched from its best class that has not failed it.
//
// Within a class the chunks are spread over the sources in proportion to
// their rates: each chunk, in index order, goes to the source that would
// finish it first given what it already has queued. Each source's share
// goes out as one SPP stream. When a source fails or stalls, its
// undelivered chunks are handed to the others. When a source runs out of
// work while chunks are still outstanding elsewhere (the end game), it
// asks for them too, and the first verified copy wins: a slow source
// costs the waiting viewers at most its head start, never the whole
// transfer. A chunk is asked twice only when that should pay: the idle
// source is at least twice as fast, or the chunk is late (outstanding
// twice as long as its source's rate predicts), so equal sources do not
// fetch everything twice. The origin is never asked twice for a chunk:
// duplicates are for peers, whose bytes cost no egress.
//
// A holder that answers nothing at all for Config.Hedge after its stream
// opened — not even the response headers a live node sends at once
// (spp.Accepted), so a slow link is not mistaken for it — (a stopped
// process whose kernel still accepts connections, a partition) is hedged: its chunks are asked of the next source as well,
// the origin included, while its stream stays open in case it was only
// slow to start; the first verified copy wins. It is also remembered as
// failed (s.health), so the next requests do not wait on it. A stream
// that stops mid-way is left to StallTimeout: it has shown it was alive.

// class orders a chunk's sources (the classes are in tier.go).
type class int

// want is one chunk a job must bring.
type want struct {
	idx   int
	f     *chunkFlight
	cands []upstream // ranked, best first
	start time.Time

	// Scheduling state, guarded by job.mu.
	done    bool            // landed, with bytes or an error
	active  int             // workers fetching it now
	failed  map[string]bool // sources that failed it
	retries int             // rounds of stalled sources asked again
}

// maxRetries bounds the rounds in which a chunk whose every source
// stalled asks the stalled ones again: a stall is often a node too busy to
// send for a moment (an overloaded machine, a home waiting on its own
// upstream), and a viewer is better served late than cut off.
const maxRetries = 2

// job fetches a set of chunks whose flights the caller owns.
type job struct {
	s     *fetcher
	ctx   context.Context
	m     *manifest.Manifest
	wants []*want // in index order
	wg    sync.WaitGroup
	// hedge is Config.Hedge (a test may shorten it).
	hedge time.Duration

	mu       sync.Mutex
	bad      map[string]bool    // sources that failed in this job
	stalled  map[string]bool    // those of them that only stalled
	queued   map[string]int64   // bytes queued per source, not yet delivered
	workers  map[*worker]bool   // running
	rates    map[string]float64 // estimate per source, fixed for the job
	timer    *time.Timer        // next end-game check, when chunks may turn late
	finished bool
}

// worker is one SPP stream to one source, for a list of chunks.
type worker struct {
	src     upstream
	ws      []*want
	started time.Time
	cancel  context.CancelFunc
	// reader is the worker's stream once open; nil before.
	reader atomic.Pointer[spp.ChunkReader]
	// hedged: its chunks were asked elsewhere too, as it kept silent.
	hedged     bool
	hedgeTimer *time.Timer
}

// lateSlack is added to a chunk's predicted time before it counts as
// late: scheduling noise on a busy machine is not a slow source.
const lateSlack = 20 * time.Millisecond

// run fetches every want, landing each flight with verified bytes or an
// error, and returns when all streams are over.
func (j *job) run() {
	slices.SortFunc(j.wants, func(a, b *want) int { return a.idx - b.idx })
	j.bad, j.stalled, j.queued, j.workers, j.rates = map[string]bool{}, map[string]bool{}, map[string]int64{}, map[*worker]bool{}, map[string]float64{}
	if j.hedge <= 0 {
		j.hedge = j.s.cfg.Hedge
	}
	var ids []string
	for _, w := range j.wants {
		for _, c := range w.cands {
			if _, ok := j.rates[c.ID]; !ok {
				j.rates[c.ID] = j.s.links.estimate(c.ID, c.Rate)
				ids = append(ids, c.ID)
			}
		}
	}
	for _, id := range j.s.health.OnProbation(ids) {
		// Failed lately, in another job: asked only once no other
		// source is left, as a stalled one is.
		j.bad[id], j.stalled[id] = true, true
	}
	j.mu.Lock()
	j.schedule()
	j.mu.Unlock()
	j.wg.Wait()
	j.mu.Lock()
	j.finished = true
	if j.timer != nil {
		j.timer.Stop()
	}
	j.mu.Unlock()
	// Only a bug leaves a chunk unlanded; never leave waiters hanging.
	for _, w := range j.wants {
		if !w.done {
			w.done = true
			j.s.fail(j.m, w, errors.New("fetch abandoned"))
		}
	}
}

// eligible returns the sources w may be fetched from now: those of its
// best class that has a source not yet failed.
func (j *job) eligible(w *want) []upstream {
	var out []upstream
	best := class(-1)
	for _, c := range w.cands {
		if j.bad[c.ID] || w.failed[c.ID] {
			continue
		}
		if best < 0 {
			best = c.class
		}
		if c.class == best {
			out = append(out, c)
		}
	}
	return out
}

// plan is the workers a scheduling round starts, in the order they were
// first given a chunk: one per source and way of asking. A source may
// hold some of a job's chunks and be the relay of others; the chunks it
// holds are asked local-only, the ones it relays must be asked as a
// relay request (it fetches them first), so they go on two streams. One
// stream for both asked the relayed chunks local-only: the source
// answered NotFound and the asker took them from outside the region.
type plan struct {
	byKey map[planKey]*worker
	order []*worker
}

type planKey struct {
	id      string
	through bool // the source fetches what it misses (fetchesThrough)
}

func newPlan() *plan { return &plan{byKey: map[planKey]*worker{}} }

// assign gives w to the source of srcs that would finish it first, given
// what each is already asked for (its queue over its estimated rate).
func (j *job) assign(p *plan, w *want, srcs []upstream) {
	size := int64(j.m.ChunkLen(w.idx))
	best, bestT := srcs[0], 0.0
	for i, c := range srcs {
		t := float64(j.queued[c.ID]+size) / j.rates[c.ID]
		if i == 0 || t < bestT {
			best, bestT = c, t
		}
	}
	j.queued[best.ID] += size
	k := planKey{best.ID, best.fetchesThrough()}
	wk := p.byKey[k]
	if wk == nil {
		wk = &worker{src: best}
		p.byKey[k] = wk
		p.order = append(p.order, wk)
	}
	wk.ws = append(wk.ws, w)
	w.active++
}

// schedule hands pending chunks to sources, starts the end game for idle
// sources, and lands the chunks no source is left for. Called with j.mu
// held, at the start and whenever a worker ends.
func (j *job) schedule() {
	if j.ctx.Err() != nil {
		for _, w := range j.wants {
			if !w.done && w.active == 0 {
				w.done = true
				j.s.fail(j.m, w, fmt.Errorf("%w: %w", errAbandoned, j.ctx.Err()))
			}
		}
		return
	}
	p := newPlan()
	for _, w := range j.wants {
		if w.done || w.active > 0 {
			continue
		}
		srcs := j.eligible(w)
		if len(srcs) == 0 && w.retries < maxRetries && j.forgiveStalls(w) {
			w.retries++
			srcs = j.eligible(w)
		}
		if len(srcs) == 0 {
			w.done = true
			err := errors.New("no node holds it")
			if len(w.failed) > 0 {
				err = fmt.Errorf("all %d sources failed", len(w.failed))
			}
			j.s.fail(j.m, w, err)
			continue
		}
		j.assign(p, w, srcs)
	}
	for _, wk := range p.order {
		j.start(wk)
	}
	j.endGame()
}

// forgiveStalls lets w ask again the sources that only stalled on it (or
// that failed lately in other jobs), and reports whether there were any.
func (j *job) forgiveStalls(w *want) bool {
	forgave := false
	for _, c := range w.cands {
		if j.stalled[c.ID] && (w.failed[c.ID] || j.bad[c.ID]) {
			delete(w.failed, c.ID)
			delete(j.bad, c.ID)
			forgave = true
		}
	}
	return forgave
}

// endGame gives each idle peer source a chunk still outstanding at
// another source, when asking twice should pay; at most two copies of a
// chunk are in flight. Chunks that may turn late are checked again then.
func (j *job) endGame() {
	if j.finished {
		return
	}
	busy := map[string]bool{}
	for wk := range j.workers {
		busy[wk.src.ID] = true
	}
	now := time.Now()
	var recheck time.Time
	for _, w := range j.wants {
		if w.done || w.active != 1 {
			continue
		}
		// Where the chunk is, and when its source should have sent it.
		var at *worker
		var ahead int64
		for wk := range j.workers {
			if i := slices.Index(wk.ws, w); i >= 0 {
				at = wk
				for _, v := range wk.ws[:i+1] {
					ahead += int64(j.m.ChunkLen(v.idx))
				}
			}
		}
		if at == nil {
			continue
		}
		due := at.started.Add(2*time.Duration(float64(ahead)/j.rates[at.src.ID]*float64(time.Second)) + lateSlack)
		for _, c := range j.eligible(w) {
			if c.class != classPeer || c.ID == at.src.ID || busy[c.ID] {
				continue
			}
			if j.rates[c.ID] < 2*j.rates[at.src.ID] && now.Before(due) {
				if recheck.IsZero() || due.Before(recheck) {
					recheck = due
				}
				continue
			}
			busy[c.ID] = true
			w.active++
			j.s.metrics.endGame.Inc()
			j.start(&worker{src: c, ws: []*want{w}})
			break
		}
	}
	if !recheck.IsZero() {
		d := time.Until(recheck)
		if j.timer == nil {
			j.timer = time.AfterFunc(d, func() {
				j.mu.Lock()
				defer j.mu.Unlock()
				j.endGame()
			})
		} else {
			j.timer.Reset(d)
		}
	}
}

// start runs wk in the background. Called with j.mu held.
func (j *job) start(wk *worker) {
	ctx, cancel := context.WithCancel(j.ctx)
	wk.cancel, wk.started = cancel, time.Now()
	j.workers[wk] = true
	// Only a holder asked for what it has is hedged: a relay or parent
	// may rightly take a while, fetching the chunk first; the origin is
	// the last resort, with nobody to hedge to.
	if j.hedge > 0 && !wk.src.fetchesThrough() && wk.src.class != classOrigin {
		wk.hedgeTimer = time.AfterFunc(j.hedge, func() {
			j.mu.Lock()
			defer j.mu.Unlock()
			j.hedgeSilent(wk)
		})
	}
	j.wg.Go(func() {
		defer cancel()
		j.work(ctx, wk)
	})
}

// hedgeSilent asks the next sources for the chunks of wk when its source
// has sent nothing since its stream started, and remembers the source as
// failed. wk goes on: if its source was only slow to start, whichever
// copy comes first is delivered and the other stream is cut. Called with
// j.mu held.
func (j *job) hedgeSilent(wk *worker) {
	if j.finished || !j.workers[wk] || wk.hedged || j.ctx.Err() != nil {
		return
	}
	if r := wk.reader.Load(); r != nil && r.Responded() {
		return // it answered (spp.Accepted): StallTimeout watches it from here
	}
	wk.hedged = true
	src := wk.src.ID
	j.s.health.Failure(src)
	j.s.rates.Add(src, 0, time.Since(wk.started), true) // the tracker ranks it down for everyone
	// The rest of this job asks it only when nothing else is left, as a
	// source that stalled (forgiveStalls).
	j.bad[src], j.stalled[src] = true, true
	p := newPlan()
	n := 0
	for _, w := range wk.ws {
		if w.done || w.active > 1 {
			continue // delivered, or already asked elsewhere (end game)
		}
		srcs := j.eligible(w)
		if len(srcs) == 0 {
			continue // nobody else: wk's stream is its only chance
		}
		j.assign(p, w, srcs)
		n++
	}
	if n == 0 {
		return
	}
	j.s.metrics.hedged.Add(float64(n))
	j.s.log.Warn("upstream silent since its stream opened; asking the next sources too", "root", j.m.Root, "from", src, "after", j.hedge, "chunks", n)
	for _, hw := range p.order {
		j.start(hw)
	}
}

// work streams wk's chunks from its source, delivering each verified
// chunk nobody delivered first.
func (j *job) work(ctx context.Context, wk *worker) {
	src := wk.src
	start := time.Now()
	sctx, span := telemetry.StartFetch(ctx, src.ID, src.label, wk.ws[0].idx, len(wk.ws))
	delivered, bytes, recvd, err := j.stream(sctx, wk)
	span.End(delivered, bytes, err)
	elapsed := time.Since(start)

	j.mu.Lock()
	defer j.mu.Unlock()
	delete(j.workers, wk)
	if wk.hedgeTimer != nil {
		wk.hedgeTimer.Stop()
	}
	for _, w := range wk.ws[delivered:] {
		w.active--
		j.queued[src.ID] -= int64(j.m.ChunkLen(w.idx))
	}
	cut := err != nil && ctx.Err() != nil && j.ctx.Err() == nil // cancelled: others delivered its chunks
	switch {
	case err == nil:
		j.s.rates.Add(src.ID, bytes, elapsed, false)
		j.s.links.observe(src.ID, bytes, elapsed)
		j.s.health.Success(src.ID)
	case cut:
		// Not a failure, and the bytes of the chunk in progress still
		// tell how fast the source was going.
		j.s.links.observe(src.ID, recvd, elapsed)
	case j.ctx.Err() != nil:
		// The job was abandoned (shutdown, or the prefetch nobody needs).
	default:
		// A peer that no longer holds a chunk (evicted since it announced)
		// is not unhealthy; anything else counts against it, and it is
		// asked nothing more in this job.
		notFound := status.Code(err) == codes.NotFound
		j.s.rates.Add(src.ID, bytes, elapsed, !notFound)
		j.s.metrics.upstreamFails.WithLabelValues(src.label).Inc()
		if errors.Is(err, manifest.ErrDigestMismatch) {
			j.s.metrics.digestFailures.Inc()
		}
		if !notFound {
			if !wk.hedged { // counted when it was hedged
				j.s.health.Failure(src.ID)
			}
			j.bad[src.ID] = true
			j.stalled[src.ID] = errors.Is(err, spp.ErrStalled)
			j.s.links.observe(src.ID, recvd, elapsed)
		}
		rest := wk.ws[delivered:]
		for _, w := range rest {
			if w.failed == nil {
				w.failed = map[string]bool{}
			}
			w.failed[src.ID] = true
		}
		j.s.log.Warn("upstream fetch failed; handing its chunks to other sources", "root", j.m.Root, "from", src.ID, "chunk", rest[0].idx, "remaining", len(rest), "err", err)
	}
	j.schedule()
}

// stream fetches wk's chunks over one SPP stream. It returns how many it
// went through (a prefix of wk.ws), the bytes it delivered first, and the
// bytes received including chunks others delivered first.
func (j *job) stream(ctx context.Context, wk *worker) (int, int64, int64, error) {
	c, err := j.s.pool.Client(wk.src.Addr)
	if err != nil {
		return 0, 0, 0, err
	}
	idxs := make([]uint32, len(wk.ws))
	for i, w := range wk.ws {
		idxs[i] = uint32(w.idx)
	}
	req := &sppv1.FetchRequest{Root: j.m.Root[:], Chunks: idxs, LocalOnly: true, Requester: j.s.cfg.NodeID, Region: j.s.cfg.Region}
	if wk.src.fetchesThrough() {
		req.LocalOnly = false
	}
	if wk.src.tier == sourceRelay {
		// A parent is asked as a viewer's edge would: it fetches through
		// its own tier and parents. A relay fetches from holders and
		// origins only, so relays never cascade.
		ctx = metadata.AppendToOutgoingContext(ctx, spp.RelayHeader, "1")
	}
	// A source busy with other streams (it delivers on them) is not
	// stalled while this one waits in its queue; a silent one is.
	r, err := spp.OpenStall(ctx, c, j.m, req, spp.Stall{Timeout: j.s.cfg.StallTimeout, Peer: j.s.peers.Get(wk.src.Addr)})
	if err != nil {
		return 0, 0, 0, err
	}
	defer r.Close()
	wk.reader.Store(r)
	var bytes int64
	for i, w := range wk.ws {
		// A fresh buffer per chunk: waiters keep it after it lands.
		_, data, err := r.Next(nil)
		if err != nil {
			if err == io.EOF {
				err = fmt.Errorf("stream ended after %d of %d chunks", i, len(wk.ws))
			}
			return i, bytes, r.Received(), err
		}
		j.mu.Lock()
		w.active--
		j.queued[wk.src.ID] -= int64(len(data))
		first := !w.done
		w.done = true
		if first {
			var done *worker
			if i == len(wk.ws)-1 {
				done = wk // its stream is about to end by itself
			}
			j.cutCovered(done)
		}
		j.mu.Unlock()
		if first {
			bytes += int64(len(data))
			j.s.deliver(j.m, w, data, wk.src)
		}
	}
	return len(wk.ws), bytes, r.Received(), nil
}

// cutCovered cancels the workers whose remaining chunks were all delivered
// by others. Called with j.mu held. done, if not nil, is a worker that
// just delivered its last chunk: it is left to end its stream cleanly,
// which cancelling would cut (traces would show a cancelled fetch that
// succeeded).
func (j *job) cutCovered(done *worker) {
	for wk := range j.workers {
		if wk == done {
			continue
		}
		covered := true
		for _, w := range wk.ws {
			if !w.done {
				covered = false
				break
			}
		}
		if covered {
			wk.cancel()
		}
	}
}

// links are this node's own measures of its sources: the rate of its
// recent transfers from each, which the tracker only learns in batches.
type links struct {
	mu sync.Mutex
	m  map[string]*rank.EWMA
}

// maxLinks bounds the sources remembered.
const maxLinks = 4096

// defaultRate is assumed of a source nobody measured yet: a middling LAN
// rate, so a new source gets a share of the work and is measured by it.
const defaultRate = 50e6

// observe folds in a transfer of bytes in d.
func (l *links) observe(id string, bytes int64, d time.Duration) {
	if d <= 0 || bytes <= 0 && d < 10*time.Millisecond {
		return // too short to say anything
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]*rank.EWMA{}
	}
	e := l.m[id]
	if e == nil {
		if len(l.m) >= maxLinks {
			return
		}
		e = &rank.EWMA{}
		l.m[id] = e
	}
	e.Add(max(float64(bytes), 1) / d.Seconds())
}

// estimate returns the rate to expect from a source: this node's own
// measure, else the tracker's, else a default.
func (l *links) estimate(id string, tracker float64) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.m[id]; e != nil && e.Value() > 0 {
		return e.Value()
	}
	if tracker > 0 {
		return tracker
	}
	return defaultRate
}
