package spp

import (
	"sync"
	"time"
)

// timer is the part of *time.Timer the stall watchdog uses.
type timer interface{ Stop() bool }

// afterFunc starts a timer that calls f after d; time.AfterFunc in
// production, a clock the test fires by hand in tests.
type afterFunc func(d time.Duration, f func()) timer

func realAfterFunc(d time.Duration, f func()) timer { return time.AfterFunc(d, f) }

// watchdog cancels a stream that makes no progress for its timeout. It
// owns its timer's whole lifecycle under one lock: a timer's callback may
// already be running when progress re-arms it or the stream closes
// (time.Timer.Stop cannot stop a callback that has started), so every arm
// has a generation, and a callback of an older generation, or one that
// runs after close, does nothing. The watchdog fires at most once and
// holds no channel, so nothing can be closed twice.
type watchdog struct {
	after   afterFunc
	timeout time.Duration
	first   time.Duration // the first arm's, before any progress
	cancel  func()

	mu     sync.Mutex
	t      timer
	gen    uint64
	fired  bool
	closed bool
	kicked bool // progress seen
}

// newWatchdog arms a watchdog that calls cancel once if kick is not
// called for timeout; before the first kick, for first instead when it
// is positive.
func newWatchdog(after afterFunc, timeout, first time.Duration, cancel func()) *watchdog {
	w := &watchdog{after: after, timeout: timeout, first: first, cancel: cancel}
	w.mu.Lock()
	w.arm()
	w.mu.Unlock()
	return w
}

// arm starts a timer of a new generation; w.mu is held.
func (w *watchdog) arm() {
	w.gen++
	gen := w.gen
	d := w.timeout
	if !w.kicked && w.first > 0 {
		d = w.first
	}
	w.t = w.after(d, func() { w.fire(gen) })
}

func (w *watchdog) fire(gen uint64) {
	w.mu.Lock()
	if w.closed || w.fired || gen != w.gen {
		w.mu.Unlock()
		return
	}
	w.fired = true
	w.mu.Unlock()
	w.cancel()
}

// kick records progress: the stall timeout starts again. A watchdog that
// already fired stays fired (its stream is cancelled).
func (w *watchdog) kick() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.fired {
		return
	}
	w.t.Stop()
	w.kicked = true
	w.arm()
}

// beforeFirst reports whether the watchdog fired before any progress.
func (w *watchdog) beforeFirst() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fired && !w.kicked
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
	w.t.Stop()
}
