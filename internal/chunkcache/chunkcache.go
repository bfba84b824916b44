// Package chunkcache keeps verified chunks in memory, least recently used
// evicted first, within a byte budget. It is the hot tier in front of the
// cachenode's disk store and the edge's answer to hot content: a chunk
// verified once is served again with no disk read, no network hop and no
// second SHA-256.
//
// Cached bytes are shared, never copied: Add takes ownership of the slice
// and Get hands out the same one, so nobody may write to either. An
// evicted chunk stays valid for whoever still holds it; the garbage
// collector reclaims it after the last reader.
package chunkcache

import (
	"container/list"
	"sync"
	"sync/atomic"

	"github.com/p2pd/p2pd/internal/manifest"
)

// shards spreads the lock: a hot file is read by many requests at once.
const shards = 16

// Cache is a byte-bounded LRU of verified chunks, safe for concurrent use.
// A nil *Cache is a valid, empty cache that keeps nothing.
type Cache struct {
	shards    [shards]shard
	hits      atomic.Int64
	misses    atomic.Int64
	evictions atomic.Int64
}

type key struct {
	root manifest.Digest
	idx  int
}

type shard struct {
	mu    sync.Mutex
	max   int64
	bytes int64
	ll    *list.List // front: most recently used
	m     map[key]*list.Element
}

type entry struct {
	k    key
	data []byte
}

// New returns a cache holding at most maxBytes of chunk data; nil when
// maxBytes is not positive (caching disabled).
func New(maxBytes int64) *Cache {
	if maxBytes <= 0 {
		return nil
	}
	c := &Cache{}
	for i := range c.shards {
		c.shards[i] = shard{max: maxBytes / shards, ll: list.New(), m: map[key]*list.Element{}}
	}
	return c
}

func (c *Cache) shard(k key) *shard {
	// Consecutive chunks land in different shards; the root's bytes are
	// uniformly random already.
	return &c.shards[(uint(k.root[0])+uint(k.idx))%shards]
}

// Get returns the verified bytes of chunk idx of root, if cached. The
// caller must not modify them.
func (c *Cache) Get(root manifest.Digest, idx int) ([]byte, bool) {
	if c == nil {
		return nil, false
	}
	k := key{root, idx}
	sh := c.shard(k)
	sh.mu.Lock()
	el, ok := sh.m[k]
	if ok {
		sh.ll.MoveToFront(el)
	}
	sh.mu.Unlock()
	if !ok {
		c.misses.Add(1)
		return nil, false
	}
	c.hits.Add(1)
	return el.Value.(*entry).data, true
}

// Contains reports whether chunk idx of root is cached, without counting
// a hit or a miss or refreshing it.
func (c *Cache) Contains(root manifest.Digest, idx int) bool {
	if c == nil {
		return false
	}
	k := key{root, idx}
	sh := c.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	_, ok := sh.m[k]
	return ok
}

// Add caches data, which must be verified chunk idx of root. The cache
// owns data from now on: nobody may modify it.
func (c *Cache) Add(root manifest.Digest, idx int, data []byte) {
	if c == nil {
		return
	}
	k := key{root, idx}
	sh := c.shard(k)
	size := int64(cap(data))
	if size > sh.max {
		return
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if el, ok := sh.m[k]; ok {
		sh.ll.MoveToFront(el)
		return
	}
	sh.m[k] = sh.ll.PushFront(&entry{k: k, data: data})
	sh.bytes += size
	for sh.bytes > sh.max {
		el := sh.ll.Back()
		e := el.Value.(*entry)
		sh.ll.Remove(el)
		delete(sh.m, e.k)
		sh.bytes -= int64(cap(e.data))
		c.evictions.Add(1)
	}
}

// Remove forgets chunk idx of root.
func (c *Cache) Remove(root manifest.Digest, idx int) {
	if c == nil {
		return
	}
	k := key{root, idx}
	sh := c.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if el, ok := sh.m[k]; ok {
		sh.ll.Remove(el)
		delete(sh.m, k)
		sh.bytes -= int64(cap(el.Value.(*entry).data))
	}
}

// RemoveRoot forgets every chunk of root and returns how many there
// were: a purged or unpublished file must not be served from memory. It
// walks the whole cache, which is fine for an operator's command.
func (c *Cache) RemoveRoot(root manifest.Digest) int {
	if c == nil {
		return 0
	}
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for k, el := range sh.m {
			if k.root != root {
				continue
			}
			sh.ll.Remove(el)
			delete(sh.m, k)
			sh.bytes -= int64(cap(el.Value.(*entry).data))
			n++
		}
		sh.mu.Unlock()
	}
	return n
}

// Bytes returns the memory held by cached chunks.
func (c *Cache) Bytes() int64 {
	if c == nil {
		return 0
	}
	var n int64
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += sh.bytes
		sh.mu.Unlock()
	}
	return n
}

// Stats returns the hits, misses and evictions so far.
func (c *Cache) Stats() (hits, misses, evictions int64) {
	if c == nil {
		return 0, 0, 0
	}
	return c.hits.Load(), c.misses.Load(), c.evictions.Load()
}
