package spp

import (
	"sync"
	"sync/atomic"
	"time"
)

// timer is the part of *time.Timer the stall watchdog uses.
type timer interface{ Stop() bool }

// afterFunc starts a timer that calls f after d; time.AfterFunc in
// production, a clock the test fires by hand in tests.
type afterFunc func(d time.Duration, f func()) timer

func realAfterFunc(d time.Duration, f func()) timer { return time.AfterFunc(d, f) }

// Stall is how a ChunkReader tells a stalled source from a slow one.
//
// A stream stalls when the reader waits for a piece (it is inside Next)
// and none arrives for Timeout. Time the reader spends elsewhere (its
// consumer, a viewer whose player buffer is full, is not asking for the
// next chunk) is not counted: flow control holds the sender back then,
// which is not the sender's fault.
//
// With Peer set, a node that is delivering pieces on any of its streams
// is alive, only busy: a stream of it waiting in the node's queue is not
// stalled while the node made progress within Timeout, for up to Patience
// of waiting for one piece. A node that sends nothing on any stream (dead,
// SIGSTOPped, cut off) still stalls Timeout after its last piece, or after
// the reader started waiting, whichever is later.
type Stall struct {
	// Timeout is the longest wait for a piece with no progress (0: the
	// stream never stalls).
	Timeout time.Duration
	// Peer, when set, is the sending node's progress over all its
	// streams; the reader records its own pieces in it.
	Peer *Peer
	// Patience bounds one wait for a piece while Peer progresses on
	// other streams (0: 15 × Timeout): a node that serves everyone but
	// one stream for that long is failed over from for that stream.
	Patience time.Duration
	// Answer, when set (and below Timeout), is how long a new stream may
	// go without any sign of life: every p2pd SPP server answers a Fetch's
	// response headers as soon as it takes it (Accepted), before it reads
	// or fetches a chunk. A stream with no headers and no piece after
	// Answer, from a node that delivered nothing on any stream (Peer)
	// within Answer either, is stalled then rather than after Timeout: a
	// stopped node costs Answer, while a busy or slow one, which answers
	// headers at once or progresses elsewhere, still gets Timeout.
	Answer time.Duration
}

// DefaultPatienceFactor is Stall.Patience in units of Timeout when unset.
const DefaultPatienceFactor = 15

// Peer is one node's liveness as seen by the readers of its streams: when
// any of them last received a piece from it. The zero value is ready.
type Peer struct {
	last atomic.Int64 // unix nanoseconds; 0: never
}

// Progress records a piece received from the node at t.
func (p *Peer) Progress(t time.Time) {
	n := t.UnixNano()
	for {
		old := p.last.Load()
		if old >= n || p.last.CompareAndSwap(old, n) {
			return
		}
	}
}

// LastProgress returns when a piece last came from the node (zero time:
// never).
func (p *Peer) LastProgress() time.Time {
	n := p.last.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Peers maps node addresses to their Peer, created on first use. The
// zero value is ready; entries are a few bytes per address ever used.
type Peers struct {
	m sync.Map // string -> *Peer
}

// Get returns the Peer of addr.
func (ps *Peers) Get(addr string) *Peer {
	if p, ok := ps.m.Load(addr); ok {
		return p.(*Peer)
	}
	p, _ := ps.m.LoadOrStore(addr, &Peer{})
	return p.(*Peer)
}

// watchdog cancels a stream that makes no progress while its reader waits.
// It owns its timer's whole lifecycle under one lock: a timer's callback
// may already be running when progress re-arms it or the stream closes
// (time.Timer.Stop cannot stop a callback that has started), so every arm
// has a generation, and a callback of an older generation, or one that
// runs after close, does nothing. The watchdog fires at most once and
// holds no channel, so nothing can be closed twice.
type watchdog struct {
	after    afterFunc
	now      func() time.Time
	timeout  time.Duration
	patience time.Duration
	peer     *Peer // nil: this stream's own progress only
	cancel   func()
	// answer is Stall.Answer (0: none); responded reports whether the
	// stream's response headers came. The answer check runs once, at
	// the stream's first wait.
	answer    time.Duration
	responded func() bool

	mu      sync.Mutex
	t       timer // nil while nobody waits
	gen     uint64
	since   time.Time // when the current wait began
	waiting bool
	fired   bool
	closed  bool
	// answered: the answer check is done (it passed, or a piece came).
	answered bool
}

// newWatchdog returns a watchdog that calls cancel once if, while the
// reader waits, no progress is made for st.Timeout (or, with st.Answer,
// the stream shows no sign of life for Answer: see Stall). The reader is
// taken to be waiting from the start (it opened the stream to read it).
// responded reports whether the stream's response headers came (nil:
// never).
func newWatchdog(after afterFunc, now func() time.Time, st Stall, responded func() bool, cancel func()) *watchdog {
	w := &watchdog{after: after, now: now, timeout: st.Timeout, patience: st.Patience, peer: st.Peer, cancel: cancel, responded: responded}
	if w.patience <= 0 {
		w.patience = DefaultPatienceFactor * st.Timeout
	}
	if st.Answer > 0 && st.Answer < st.Timeout {
		w.answer = st.Answer
	} else {
		w.answered = true
	}
	w.wait()
	return w
}

// arm starts a timer of a new generation that fires after d; w.mu is held.
func (w *watchdog) arm(d time.Duration) {
	w.disarm()
	gen := w.gen
	w.t = w.after(d, func() { w.fire(gen) })
}

// disarm stops the current timer, and a callback of it that already
// started finds its generation stale; w.mu is held.
func (w *watchdog) disarm() {
	w.gen++
	if w.t != nil {
		w.t.Stop()
		w.t = nil
	}
}

func (w *watchdog) fire(gen uint64) {
	w.mu.Lock()
	if w.closed || w.fired || gen != w.gen {
		w.mu.Unlock()
		return
	}
	if !w.answered {
		// The stream's first Answer: a node that answered its headers,
		// or delivers on other streams, is alive; the rest of Timeout
		// then applies as to any wait.
		w.answered = true
		now := w.now()
		alive := w.responded != nil && w.responded()
		if w.peer != nil && now.Sub(w.peer.LastProgress()) < w.answer {
			alive = true
		}
		if rest := w.timeout - now.Sub(w.since); alive && rest > 0 {
			w.arm(rest)
			w.mu.Unlock()
			return
		}
		if !alive {
			w.fired = true
			w.t = nil
			w.mu.Unlock()
			w.cancel()
			return
		}
	}
	if w.peer != nil {
		// The node is busy, not stalled, while it delivers on other
		// streams: wait on until it has been silent for the timeout,
		// or this stream has waited its patience.
		now := w.now()
		quiet := now.Sub(w.peer.LastProgress())
		if waited := now.Sub(w.since); quiet < w.timeout && waited < w.patience {
			w.arm(min(w.timeout-quiet, w.patience-waited))
			w.mu.Unlock()
			return
		}
	}
	w.fired = true
	w.t = nil
	w.mu.Unlock()
	w.cancel()
}

// wait records that the reader waits for a piece: the stall clock runs
// from now unless it already runs.
func (w *watchdog) wait() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.fired || w.waiting {
		return
	}
	w.waiting, w.since = true, w.now()
	if !w.answered {
		w.arm(w.answer)
		return
	}
	w.arm(w.timeout)
}

// progress records a piece received: the wait is over, and the stall
// clock stops until the reader waits again.
func (w *watchdog) progress() {
	if w.peer != nil {
		w.peer.Progress(w.now())
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.fired {
		return
	}
	w.waiting, w.answered = false, true
	w.disarm()
}

// kick records progress while the reader goes on waiting: the stall
// timeout starts again. A watchdog that already fired stays fired (its
// stream is cancelled).
func (w *watchdog) kick() {
	w.progress()
	w.wait()
}

// stalled reports whether the watchdog fired.
func (w *watchdog) stalled() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fired
}

// close stops the watchdog for good; it may be called any number of
// times, from any goroutine.
func (w *watchdog) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	w.disarm()
}
