package flight

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// waitUntil polls cond; flight sits below the services' test kits.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for the first call")
		}
	}
}

func TestDoSharesOneCall(t *testing.T) {
	var g Group[int]
	release := make(chan struct{})
	var calls atomic.Int32
	first := make(chan int)
	go func() {
		v, _ := g.Do(context.Background(), "k", func() (int, error) {
			calls.Add(1)
			<-release
			return 42, nil
		})
		first <- v
	}()
	waitUntil(t, func() bool { return calls.Load() == 1 })

	// While it is in flight, another caller joins it instead of calling
	// again; this one gives up at once, which must not end the call.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := g.Do(ctx, "k", func() (int, error) {
		t.Error("second call ran while the first was in flight")
		return 0, nil
	}); err == nil {
		t.Fatal("cancelled caller got no error")
	}
	close(release)
	if v := <-first; v != 42 || calls.Load() != 1 {
		t.Fatalf("first caller got %d after %d calls", v, calls.Load())
	}
	// Done calls are forgotten: the next caller calls again.
	if v, _ := g.Do(context.Background(), "k", func() (int, error) { return 7, nil }); v != 7 {
		t.Fatalf("after the call ended: got %d", v)
	}
}
