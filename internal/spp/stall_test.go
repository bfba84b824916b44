package spp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/testclock"
	"google.golang.org/grpc"
)

// handClock is a clock whose timers fire only when the test says so: it
// keeps every callback it was ever given, stopped or not, so a test can
// run a callback late, as a timer that fired just before Stop does.
type handClock struct {
	mu  sync.Mutex
	fns []func()
	ds  []time.Duration // each timer's duration, in arming order
}

type handTimer struct{}

func (handTimer) Stop() bool { return true }

func (c *handClock) after(d time.Duration, f func()) timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fns = append(c.fns, f)
	c.ds = append(c.ds, d)
	return handTimer{}
}

// fireLatest runs the callback of the timer armed last.
func (c *handClock) fireLatest() {
	c.mu.Lock()
	f := c.fns[len(c.fns)-1]
	c.mu.Unlock()
	f()
}

// fireAll runs every callback ever armed, oldest first.
func (c *handClock) fireAll() {
	c.mu.Lock()
	fns := append([]func(){}, c.fns...)
	c.mu.Unlock()
	for _, f := range fns {
		f()
	}
}

// The crash of issue 12, step by step: the timer fires as a piece arrives
// (the piece re-arms it), then fires again, then the stream closes and a
// late callback runs. The old reader closed its stall channel twice.
func TestWatchdogFireRacesProgress(t *testing.T) {
	for _, tc := range []struct {
		name        string
		steps       func(c *handClock, w *watchdog)
		wantCancels int32
		wantStalled bool
	}{
		{"fire, then progress re-arms, then fire again", func(c *handClock, w *watchdog) {
			c.fireLatest()
			w.kick()
			c.fireLatest()
			w.close()
			c.fireAll()
		}, 1, true},
		{"progress, then the stale callback runs late", func(c *handClock, w *watchdog) {
			w.kick()
			c.fns[0]() // the first timer's callback had started before Stop
			w.close()
		}, 0, false},
		{"close, then every callback runs", func(c *handClock, w *watchdog) {
			w.kick()
			w.kick()
			w.close()
			w.close()
			c.fireAll()
		}, 0, false},
		{"the current timer fires once", func(c *handClock, w *watchdog) {
			w.kick()
			c.fireLatest()
			c.fireLatest()
			c.fireAll()
			w.close()
		}, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &handClock{}
			var cancels atomic.Int32
			w := newWatchdog(c.after, time.Now, Stall{Timeout: time.Second}, nil, func() { cancels.Add(1) })
			tc.steps(c, w)
			if got := cancels.Load(); got != tc.wantCancels {
				t.Errorf("cancelled %d times, want %d", got, tc.wantCancels)
			}
			if w.stalled() != tc.wantStalled {
				t.Errorf("stalled %v, want %v", w.stalled(), tc.wantStalled)
			}
		})
	}
}

// A reader on a hand clock: time the reader spends outside Next (its
// consumer is slow, the sender is held back by flow control) never stalls
// the stream, however many timers fire then; stale callbacks do nothing;
// and nothing runs after Close.
func TestReaderStallOnHandClock(t *testing.T) {
	p, cl := start(t, honest)
	c := &handClock{}
	r, err := open(context.Background(), cl, p.m, &sppv1.FetchRequest{Root: p.m.Root[:], Chunks: []uint32{0, 1, 2}}, Stall{Timeout: time.Second}, c.after, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i := range 3 {
		_, data, err := r.Next(nil)
		if err != nil || !bytes.Equal(data, p.chunk(i)) {
			t.Fatalf("chunk %d: %v", i, err)
		}
		// Between chunks the reader does not wait: every timer ever
		// armed fires now, as a long pause of the consumer would let it.
		c.fireAll()
	}
	if _, _, err := r.Next(nil); err != io.EOF {
		t.Fatalf("after the last chunk: %v, want EOF", err)
	}
	r.Close()
	c.fireAll()
	r.Close()
}

// A sender that accepts a Fetch and sends nothing stalls a waiting reader
// when its timer fires.
func TestReaderStallsOnSilentSender(t *testing.T) {
	p, cl := start(t, silent)
	c := &handClock{}
	r, err := open(context.Background(), cl, p.m, &sppv1.FetchRequest{Root: p.m.Root[:], Chunks: []uint32{0}}, Stall{Timeout: time.Second}, c.after, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c.fireLatest() // the reader waits from Open on
	if _, _, err := r.Next(nil); !errors.Is(err, ErrStalled) {
		t.Fatalf("Next: %v, want %v", err, ErrStalled)
	}
}

// silent accepts a Fetch and sends nothing until the client leaves.
func silent(_ *peer, _ *sppv1.FetchRequest, s grpc.ServerStreamingServer[sppv1.FetchResponse]) error {
	<-s.Context().Done()
	return s.Context().Err()
}

// A busy node (pieces arrive on its other streams) does not stall a
// stream waiting in its queue; a node silent on every stream does, and so
// does one stream that waited its whole patience.
func TestWatchdogBusyPeerIsNotStalled(t *testing.T) {
	for _, tc := range []struct {
		name string
		// steps moves the clock and fires timers; it returns whether the
		// watchdog must have fired.
		steps func(c *handClock, now *testclock.Clock, p *Peer) bool
	}{
		{"the node delivers elsewhere within the timeout", func(c *handClock, now *testclock.Clock, p *Peer) bool {
			for range 3 { // under the patience of 4 s
				now.Advance(900 * time.Millisecond)
				p.Progress(now.Now())
				now.Advance(100 * time.Millisecond)
				c.fireLatest()
			}
			return false
		}},
		{"the node goes silent", func(c *handClock, now *testclock.Clock, p *Peer) bool {
			now.Advance(500 * time.Millisecond)
			p.Progress(now.Now())
			now.Advance(500 * time.Millisecond)
			c.fireLatest() // 0.5 s since the node's last piece: wait on
			now.Advance(time.Second)
			c.fireLatest() // 1 s: stalled
			return true
		}},
		{"the node never delivered anything", func(c *handClock, now *testclock.Clock, p *Peer) bool {
			now.Advance(time.Second)
			c.fireLatest()
			return true
		}},
		{"one stream waits its whole patience", func(c *handClock, now *testclock.Clock, p *Peer) bool {
			for range 4 {
				now.Advance(time.Second)
				p.Progress(now.Now())
				c.fireLatest()
			}
			return true // patience is 4 s
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, now, p := &handClock{}, testclock.New(time.Unix(1000, 0)), &Peer{}
			var cancels atomic.Int32
			w := newWatchdog(c.after, now.Now, Stall{Timeout: time.Second, Peer: p, Patience: 4 * time.Second}, nil, func() { cancels.Add(1) })
			defer w.close()
			want := tc.steps(c, now, p)
			if w.stalled() != want || (cancels.Load() == 1) != want {
				t.Fatalf("stalled %v after %d cancels, want %v", w.stalled(), cancels.Load(), want)
			}
		})
	}
}

// Stress under -race: stall timeouts short enough to fire while pieces
// arrive, readers closed at any point. Bounded in count; any outcome but
// a panic or a race is fine.
func TestReaderStallStress(t *testing.T) {
	p, cl := start(t, honest)
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 8 {
				stall := time.Duration(1+(i*8+j)%50) * time.Microsecond
				r, err := Open(context.Background(), cl, p.m, &sppv1.FetchRequest{Root: p.m.Root[:], Chunks: []uint32{0, 1, 2, 3}}, stall)
				if err != nil {
					continue
				}
				for k := 0; k < j%5; k++ {
					if _, _, err := r.Next(nil); err != nil {
						if errors.Is(err, ErrProtocol) || errors.Is(err, manifest.ErrDigestMismatch) {
							t.Errorf("reader %d/%d: %v", i, j, err)
						}
						break
					}
				}
				r.Close()
				r.Close()
			}
		}()
	}
	wg.Wait()
}

// A new stream from a node that shows no sign of life (no response
// headers, no piece on any stream) stalls at Answer; one that answered
// its headers, or whose node delivers elsewhere, waits the whole Timeout.
func TestWatchdogAnswer(t *testing.T) {
	for _, tc := range []struct {
		name string
		// steps moves the clock and fires timers; it returns whether the
		// watchdog must have fired.
		steps func(c *handClock, now *testclock.Clock, p *Peer, headers *atomic.Bool) bool
	}{
		{"silent node: stalled at Answer", func(c *handClock, now *testclock.Clock, p *Peer, headers *atomic.Bool) bool {
			now.Advance(250 * time.Millisecond)
			c.fireLatest()
			return true
		}},
		{"silent node that delivered long ago: stalled at Answer", func(c *handClock, now *testclock.Clock, p *Peer, headers *atomic.Bool) bool {
			p.Progress(now.Now().Add(-time.Minute))
			now.Advance(250 * time.Millisecond)
			c.fireLatest()
			return true
		}},
		{"headers came: the rest of Timeout applies", func(c *handClock, now *testclock.Clock, p *Peer, headers *atomic.Bool) bool {
			headers.Store(true)
			now.Advance(250 * time.Millisecond)
			c.fireLatest()
			if len(c.fns) != 2 {
				t.Fatalf("%d timers armed, want the answer's and the rest of the timeout's", len(c.fns))
			}
			return false
		}},
		{"headers came but no piece for Timeout: stalled", func(c *handClock, now *testclock.Clock, p *Peer, headers *atomic.Bool) bool {
			headers.Store(true)
			now.Advance(250 * time.Millisecond)
			c.fireLatest()
			now.Advance(750 * time.Millisecond)
			c.fireLatest()
			return true
		}},
		{"the node delivers on another stream", func(c *handClock, now *testclock.Clock, p *Peer, headers *atomic.Bool) bool {
			now.Advance(200 * time.Millisecond)
			p.Progress(now.Now())
			now.Advance(50 * time.Millisecond)
			c.fireLatest()
			return false
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, now, p := &handClock{}, testclock.New(time.Unix(1000, 0)), &Peer{}
			var cancels atomic.Int32
			var headers atomic.Bool
			w := newWatchdog(c.after, now.Now, Stall{Timeout: time.Second, Peer: p, Answer: 250 * time.Millisecond}, headers.Load, func() { cancels.Add(1) })
			defer w.close()
			want := tc.steps(c, now, p, &headers)
			if w.stalled() != want || (cancels.Load() == 1) != want {
				t.Fatalf("stalled %v after %d cancels, want %v", w.stalled(), cancels.Load(), want)
			}
		})
	}
}

// The answer check arms the first timer at Answer; a piece before it
// ends the check, and every later wait is armed at Timeout.
func TestWatchdogAnswerEndsWithAPiece(t *testing.T) {
	c, now := &handClock{}, testclock.New(time.Unix(1000, 0))
	w := newWatchdog(c.after, now.Now, Stall{Timeout: time.Second, Answer: 250 * time.Millisecond}, nil, func() {})
	defer w.close()
	now.Advance(100 * time.Millisecond)
	w.kick()   // a piece; the reader waits for the next
	c.fns[0]() // the answer's timer, run late
	if w.stalled() {
		t.Fatal("the answer's timer fired after a piece came")
	}
	if want := []time.Duration{250 * time.Millisecond, time.Second}; !slices.Equal(c.ds, want) {
		t.Fatalf("timers armed for %v, want %v", c.ds, want)
	}
}
