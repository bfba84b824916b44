package chunkcache

import (
	"bytes"
	"sync"
	"testing"

	"github.com/p2pd/p2pd/internal/manifest"
)

func TestLRUWithinBudget(t *testing.T) {
	const chunk = 1 << 10
	c := New(shards * 4 * chunk) // four chunks per shard
	var root manifest.Digest
	// Chunks 0, 16, 32, ... share shard 0.
	idx := func(i int) int { return i * shards }
	for i := range 4 {
		c.Add(root, idx(i), bytes.Repeat([]byte{byte(i)}, chunk))
	}
	if _, ok := c.Get(root, idx(0)); !ok { // 0 becomes most recent
		t.Fatal("chunk 0 missing")
	}
	c.Add(root, idx(4), make([]byte, chunk)) // evicts the least recent: 1
	if _, ok := c.Get(root, idx(1)); ok {
		t.Error("least recently used chunk kept")
	}
	for _, i := range []int{0, 2, 3, 4} {
		if _, ok := c.Get(root, idx(i)); !ok {
			t.Errorf("chunk %d evicted", i)
		}
	}
	if got, want := c.Bytes(), int64(4*chunk); got != want {
		t.Errorf("Bytes = %d, want %d", got, want)
	}
	if _, _, ev := c.Stats(); ev != 1 {
		t.Errorf("evictions = %d, want 1", ev)
	}
	c.Remove(root, idx(0))
	if _, ok := c.Get(root, idx(0)); ok || c.Bytes() != 3*chunk {
		t.Errorf("after Remove: cached %v, %d bytes", ok, c.Bytes())
	}
	// Larger than a shard: served by the caller, never kept.
	c.Add(root, 1, make([]byte, 5*chunk))
	if _, ok := c.Get(root, 1); ok {
		t.Error("oversized chunk kept")
	}
}

func TestNilCacheKeepsNothing(t *testing.T) {
	c := New(0)
	var root manifest.Digest
	c.Add(root, 0, []byte("x"))
	if _, ok := c.Get(root, 0); ok || c.Bytes() != 0 {
		t.Error("disabled cache kept a chunk")
	}
}

func TestConcurrent(t *testing.T) {
	c := New(1 << 20)
	var root manifest.Digest
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				k := (g*7 + i) % 300
				if data, ok := c.Get(root, k); ok && (len(data) != 4096 || data[0] != byte(k)) {
					t.Errorf("chunk %d: wrong bytes", k)
					return
				}
				c.Add(root, k, bytes.Repeat([]byte{byte(k)}, 4096))
			}
		})
	}
	wg.Wait()
	if b := c.Bytes(); b > 1<<20 {
		t.Errorf("%d bytes cached, over the budget", b)
	}
}

func TestRemoveRoot(t *testing.T) {
	const chunk = 1 << 10
	c := New(1 << 20)
	a, b := manifest.Digest{1}, manifest.Digest{2}
	for i := range 40 {
		c.Add(a, i, make([]byte, chunk))
		c.Add(b, i, make([]byte, chunk))
	}
	if n := c.RemoveRoot(a); n != 40 {
		t.Errorf("RemoveRoot = %d, want 40", n)
	}
	for i := range 40 {
		if c.Contains(a, i) {
			t.Fatalf("chunk %d of the removed root still cached", i)
		}
		if !c.Contains(b, i) {
			t.Fatalf("chunk %d of the other root gone", i)
		}
	}
	if got := c.Bytes(); got != 40*chunk {
		t.Errorf("Bytes = %d, want %d", got, 40*chunk)
	}
	if n := c.RemoveRoot(a); n != 0 {
		t.Errorf("second RemoveRoot = %d, want 0", n)
	}
	var nilCache *Cache
	if n := nilCache.RemoveRoot(a); n != 0 {
		t.Errorf("nil cache RemoveRoot = %d", n)
	}
}
