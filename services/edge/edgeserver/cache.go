package edgeserver

import (
	"container/list"
	"context"
	"sync"
	"time"
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
	calls map[K]*call[V]
}

type cacheEntry[K comparable, V any] struct {
	key     K
	val     V
	cost    int64
	expires time.Time
	fresh   time.Time // when it was last loaded: staleIfError counts from here plus ttl
}

type call[V any] struct {
	done chan struct{}
	val  V
	err  error
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
		calls:      map[K]*call[V]{},
	}
}

// get returns the cached value for key or loads it. The load runs detached
// from ctx (other callers may be waiting for it) but bounded by the cache's
// timeout; ctx only bounds how long this caller waits.
func (c *cache[K, V]) get(ctx context.Context, key K, load func(context.Context) (V, error)) (V, error) {
	c.mu.Lock()
	if el, ok := c.items[key]; ok {
		e := el.Value.(*cacheEntry[K, V])
		if c.ttl == 0 || c.now().Before(e.expires) {
			c.ll.MoveToFront(el)
			c.mu.Unlock()
			return e.val, nil
		}
		if !c.usable(e) {
			c.remove(el)
		}
	}
	cl, ok := c.calls[key]
	if !ok {
		cl = &call[V]{done: make(chan struct{})}
		c.calls[key] = cl
		go c.load(context.WithoutCancel(ctx), key, cl, load)
	}
	c.mu.Unlock()
	select {
	case <-cl.done:
		return cl.val, cl.err
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}

func (c *cache[K, V]) load(ctx context.Context, key K, cl *call[V], load func(context.Context) (V, error)) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	cl.val, cl.err = load(ctx)
	c.mu.Lock()
	delete(c.calls, key)
	if cl.err == nil {
		c.add(key, cl.val)
	} else if el, ok := c.items[key]; ok {
		if e := el.Value.(*cacheEntry[K, V]); c.usable(e) {
			// Answer the stale value, and reuse it for another ttl before
			// the next try, so an outage costs one failed load per ttl
			// rather than one per request.
			cl.val, cl.err = e.val, nil
			e.expires = c.now().Add(c.ttl)
			c.ll.MoveToFront(el)
		} else {
			c.remove(el)
		}
	}
	c.mu.Unlock()
	close(cl.done)
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
