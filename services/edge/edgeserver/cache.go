package edgeserver

import (
	"container/list"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/p2pd/p2pd/internal/flight"
)

// cache is a bounded LRU whose entries may expire, with concurrent misses
// for one key coalesced into a single load: a thousand viewers starting
// the same file cost one GetFile, one GetManifest and one Locate.
// Errors are never cached; a load that wants a negative answer cached
// returns it as a value.
//
// With staleIfError set, an expired entry is kept and answered when the
// load that should refresh it fails (RFC 5861's stale-if-error): an edge
// goes on serving what it knew while the tracker is down or restarting,
// and since a value maps to content-addressed data, a stale one still
// serves correct bytes of a version that was published.
type cache[K comparable, V any] struct {
	maxEntries   int
	maxCost      int64
	costOf       func(V) int64 // nil: every entry costs 0
	ttl          time.Duration // 0: entries never expire
	timeout      time.Duration // bounds one load
	staleIfError time.Duration // how long past expiry an entry may stand in for a failed load
	now          func() time.Time

	mu    sync.Mutex
	ll    *list.List // front is most recently used
	items map[K]*list.Element
	cost  int64

	loads flight.Group[V] // keyed by fmt.Sprint(key)
}

type cacheEntry[K comparable, V any] struct {
	key     K
	val     V
	cost    int64
	expires time.Time
	fresh   time.Time // when it was last loaded: staleIfError counts from here plus ttl
}

func newCache[K comparable, V any](maxEntries int, maxCost int64, costOf func(V) int64, ttl, timeout time.Duration, now func() time.Time) *cache[K, V] {
	return &cache[K, V]{
		maxEntries: maxEntries,
		maxCost:    maxCost,
		costOf:     costOf,
		ttl:        ttl,
		timeout:    timeout,
		now:        now,
		ll:         list.New(),
		items:      map[K]*list.Element{},
	}
}

// get returns the cached value for key or loads it. The load runs detached
// from ctx (other callers may be waiting for it) but bounded by the cache's
// timeout; ctx only bounds how long this caller waits.
func (c *cache[K, V]) get(ctx context.Context, key K, load func(context.Context) (V, error)) (V, error) {
	if v, ok := c.fresh(key); ok {
		return v, nil
	}
	detached := context.WithoutCancel(ctx)
	return c.loads.Do(ctx, fmt.Sprint(key), func() (V, error) { return c.load(detached, key, load) })
}

// fresh returns the unexpired value of key. An expired one is dropped
// unless it may still stand in for a failed load.
func (c *cache[K, V]) fresh(key K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		e := el.Value.(*cacheEntry[K, V])
		if c.ttl == 0 || c.now().Before(e.expires) {
			c.ll.MoveToFront(el)
			return e.val, true
		}
		if !c.usable(e) {
			c.remove(el)
		}
	}
	var zero V
	return zero, false
}

// load runs one load of key for every caller waiting, and keeps what it
// got.
func (c *cache[K, V]) load(ctx context.Context, key K, load func(context.Context) (V, error)) (V, error) {
	// A caller that missed the cache just before a load stored its value
	// may start a flight just after that load ended: look again.
	if v, ok := c.fresh(key); ok {
		return v, nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	val, err := load(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		c.add(key, val)
	} else if el, ok := c.items[key]; ok {
		if e := el.Value.(*cacheEntry[K, V]); c.usable(e) {
			// Answer the stale value, and reuse it for another ttl before
			// the next try, so an outage costs one failed load per ttl
			// rather than one per request.
			val, err = e.val, nil
			e.expires = c.now().Add(c.ttl)
			c.ll.MoveToFront(el)
		} else {
			c.remove(el)
		}
	}
	return val, err
}

// usable reports whether an expired entry may still stand in for a failed
// load.
func (c *cache[K, V]) usable(e *cacheEntry[K, V]) bool {
	return c.staleIfError > 0 && c.now().Before(e.fresh.Add(c.ttl+c.staleIfError))
}

func (c *cache[K, V]) add(key K, val V) {
	if el, ok := c.items[key]; ok {
		c.remove(el)
	}
	e := &cacheEntry[K, V]{key: key, val: val}
	if c.costOf != nil {
		e.cost = c.costOf(val)
	}
	if c.maxCost > 0 && e.cost > c.maxCost {
		return // larger than the whole cache: serve it, don't keep it
	}
	if c.ttl > 0 {
		e.fresh = c.now()
		e.expires = e.fresh.Add(c.ttl)
	}
	c.items[key] = c.ll.PushFront(e)
	c.cost += e.cost
	for c.ll.Len() > c.maxEntries || (c.maxCost > 0 && c.cost > c.maxCost) {
		c.remove(c.ll.Back())
	}
}

func (c *cache[K, V]) remove(el *list.Element) {
	e := el.Value.(*cacheEntry[K, V])
	c.ll.Remove(el)
	delete(c.items, e.key)
	c.cost -= e.cost
}
