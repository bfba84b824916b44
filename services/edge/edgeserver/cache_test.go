package edgeserver

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2pd/p2pd/internal/testclock"
)

func TestCacheBoundsAndExpiry(t *testing.T) {
	clock := testclock.New(time.Unix(1000, 0))
	tests := []struct {
		name       string
		maxEntries int
		maxCost    int64
		ttl        time.Duration
		keys       []string // loaded in order
		advance    time.Duration
		cached     []string // hit without a load afterwards
		evicted    []string // loaded again afterwards
	}{
		{"entry bound evicts least recent", 2, 0, 0, []string{"a", "b", "c"}, 0, []string{"b", "c"}, []string{"a"}},
		{"cost bound", 100, 10, 0, []string{"aaaa", "bbbb", "cccc"}, 0, []string{"bbbb", "cccc"}, []string{"aaaa"}},
		{"larger than the cache is not kept", 100, 3, 0, []string{"aaaa"}, 0, nil, []string{"aaaa"}},
		{"fresh within ttl", 100, 0, time.Second, []string{"a", "b"}, 999 * time.Millisecond, []string{"a", "b"}, nil},
		{"expired after ttl", 100, 0, time.Second, []string{"a", "b"}, time.Second, nil, []string{"a", "b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache[string, string](tc.maxEntries, tc.maxCost, func(v string) int64 { return int64(len(v)) }, tc.ttl, time.Minute, clock.Now)
			loads := map[string]int{}
			get := func(k string) {
				v, err := c.get(context.Background(), k, func(context.Context) (string, error) {
					loads[k]++
					return k, nil
				})
				if err != nil || v != k {
					t.Fatalf("get(%q) = %q, %v", k, v, err)
				}
			}
			for _, k := range tc.keys {
				get(k)
			}
			clock.Advance(tc.advance)
			for _, k := range tc.cached {
				get(k)
				if loads[k] != 1 {
					t.Errorf("%q loaded %d times, want a cache hit", k, loads[k])
				}
			}
			for _, k := range tc.evicted {
				get(k)
				if loads[k] != 2 {
					t.Errorf("%q loaded %d times, want it evicted and loaded again", k, loads[k])
				}
			}
		})
	}
}

func TestCacheCoalescesAndSkipsErrors(t *testing.T) {
	c := newCache[string, int](10, 0, nil, 0, time.Minute, time.Now)
	release := make(chan struct{})
	var loads atomic.Int32
	load := func(context.Context) (int, error) {
		loads.Add(1)
		<-release
		return 7, nil
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if v, err := c.get(context.Background(), "k", load); v != 7 || err != nil {
				t.Errorf("get = %d, %v", v, err)
			}
		})
	}
	// Every caller is either waiting on the one load or will hit the cache.
	for loads.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if n := loads.Load(); n != 1 {
		t.Errorf("%d loads for concurrent gets, want 1", n)
	}

	boom := errors.New("boom")
	fails := 0
	for range 2 {
		_, err := c.get(context.Background(), "bad", func(context.Context) (int, error) { fails++; return 0, boom })
		if !errors.Is(err, boom) {
			t.Fatalf("err %v, want boom", err)
		}
	}
	if fails != 2 {
		t.Errorf("failed load ran %d times, want 2: errors must not be cached", fails)
	}

	// A waiter whose context ends returns at once; the load carries on.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.get(ctx, "slow", func(context.Context) (int, error) { return 1, nil }); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
}
