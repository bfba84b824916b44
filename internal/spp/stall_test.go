package spp

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	"google.golang.org/grpc"
)

// handClock is a clock whose timers fire only when the test says so: it
// keeps every callback it was ever given, stopped or not, so a test can
// run a callback late, as a timer that fired just before Stop does.
type handClock struct {
	mu  sync.Mutex
	fns []func()
	ds  []time.Duration // each timer's duration, in order
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
			w := newWatchdog(c.after, time.Second, 0, func() { cancels.Add(1) })
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

// OpenHeld's first-piece timeout: the first arm waits first, every arm
// after progress the stall timeout; a reader from a holder that sends
// nothing fails with ErrStalled saying no first piece came.
func TestFirstPieceTimeout(t *testing.T) {
	c := &handClock{}
	w := newWatchdog(c.after, time.Second, 100*time.Millisecond, func() {})
	w.kick()
	w.kick()
	if want := []time.Duration{100 * time.Millisecond, time.Second, time.Second}; !slices.Equal(c.ds, want) {
		t.Fatalf("timers armed for %v, want %v", c.ds, want)
	}
	w.close()

	_, cl := start(t, func(_ *peer, _ *sppv1.FetchRequest, s grpc.ServerStreamingServer[sppv1.FetchResponse]) error {
		<-s.Context().Done() // a stopped holder
		return s.Context().Err()
	})
	p, _ := start(t, honest)
	c = &handClock{}
	r, err := open(context.Background(), cl, p.m, &sppv1.FetchRequest{Root: p.m.Root[:], Chunks: []uint32{0}}, time.Hour, 100*time.Millisecond, c.after)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c.fireLatest()
	if _, _, err := r.Next(nil); !errors.Is(err, ErrStalled) || !strings.Contains(err.Error(), "no answer") {
		t.Fatalf("Next from a silent holder: %v, want %v for the first piece", err, ErrStalled)
	}
}

// A reader on a hand clock: stale callbacks of timers re-armed by pieces
// do not stall the stream, the current one does, and nothing runs after
// Close.
func TestReaderStallOnHandClock(t *testing.T) {
	p, cl := start(t, honest)
	c := &handClock{}
	r, err := open(context.Background(), cl, p.m, &sppv1.FetchRequest{Root: p.m.Root[:], Chunks: []uint32{0, 1, 2}}, time.Second, 0, c.after)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, data, err := r.Next(nil)
	if err != nil || !bytes.Equal(data, p.chunk(0)) {
		t.Fatalf("chunk 0: %v", err)
	}
	c.mu.Lock()
	stale := c.fns[:len(c.fns)-1]
	c.mu.Unlock()
	for _, f := range stale {
		f()
	}
	if _, data, err = r.Next(nil); err != nil || !bytes.Equal(data, p.chunk(1)) {
		t.Fatalf("chunk 1 after stale timers ran: %v", err)
	}
	c.fireLatest()
	// Chunk 2 may already be buffered in the stream; if not, the stream
	// is cancelled and Next says why.
	if _, data, err = r.Next(nil); !errors.Is(err, ErrStalled) && (err != nil || !bytes.Equal(data, p.chunk(2))) {
		t.Fatalf("chunk 2 after the timer fired: %v, want %v or the buffered chunk", err, ErrStalled)
	}
	r.Close()
	c.fireAll()
	r.Close()
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
