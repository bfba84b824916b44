// Package bufpool is p2pd's one pool of byte buffers: gRPC's message
// buffers, chunks read from disk to be sent, chunks an edge holds on
// their way to a viewer.
//
// The ownership rule, the same wherever a buffer goes: whoever took a
// buffer with Get owns it, and hands it back with Put exactly once, when
// neither it nor anything it gave the buffer (or a slice of it) will read
// or write it again. Handing the buffer on (to a stream, a queue, another
// goroutine) hands the ownership on with it; whoever holds it last puts
// it back. A buffer that is kept (cached, stored) is never put back: a
// buffer put back too early is reused under a reader's feet, one never put
// back only costs an allocation.
package bufpool

import (
	"math/bits"
	"sync"
	"sync/atomic"
)

// Size classes: powers of two from 256 bytes to 8 MiB (a chunk message
// and then some); larger buffers are allocated and dropped, not pooled.
const (
	minClass = 8
	maxClass = 23
)

// Pool recycles buffers by size class. Its buffers' contents are
// arbitrary: every user fills a buffer before reading it, so clearing it
// would be wasted work (with chunk-sized buffers, a fifth of a node's CPU
// in profiles of a cold fetch). It satisfies gRPC's mem.BufferPool. The
// zero value is ready.
type Pool struct {
	pools [maxClass + 1]sync.Pool
	inUse atomic.Int64
}

func class(n int) int {
	if n <= 1<<minClass {
		return minClass
	}
	return bits.Len(uint(n - 1))
}

// Get returns a buffer of length n, its capacity n rounded up to a power
// of two.
func (p *Pool) Get(n int) *[]byte {
	p.inUse.Add(1)
	c := class(n)
	if c > maxClass {
		b := make([]byte, n)
		return &b
	}
	if v := p.pools[c].Get(); v != nil {
		b := v.(*[]byte)
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<c)
	return &b
}

// Put gives back a buffer obtained from Get; nil is ignored. A buffer
// whose capacity is no size class (one that grew, say) is dropped.
func (p *Pool) Put(b *[]byte) {
	if b == nil {
		return
	}
	p.inUse.Add(-1)
	c := bits.Len(uint(cap(*b))) - 1
	if c < minClass || c > maxClass || cap(*b) != 1<<c {
		return
	}
	*b = (*b)[:cap(*b)]
	p.pools[c].Put(b)
}

// InUse returns how many buffers are out (taken and not put back), so
// their bound can be observed.
func (p *Pool) InUse() int64 { return p.inUse.Load() }
