package spp

import (
	"math/bits"
	"sync"

	"google.golang.org/grpc/mem"
)

// Buffer size classes of Buffers: powers of two from 256 bytes to 8 MiB
// (a chunk message and then some); larger requests are not pooled.
const (
	minBufClass = 8
	maxBufClass = 23
)

// Buffers is the gRPC buffer pool of p2pd's servers and clients (see
// service.GRPCServerOptions): gRPC's own pool, minus the zeroing. gRPC
// fills every buffer it takes (a frame read in full, a message encoded)
// before anyone reads it, so clearing it first is wasted work, and with
// chunk-sized messages that work was a fifth of a node's CPU in profiles
// of a cold fetch.
var Buffers mem.BufferPool = &bufferPool{}

type bufferPool struct {
	pools [maxBufClass + 1]sync.Pool
}

func bufClass(n int) int {
	if n <= 1<<minBufClass {
		return minBufClass
	}
	return bits.Len(uint(n - 1))
}

// Get returns a buffer of length n whose contents are arbitrary.
func (p *bufferPool) Get(n int) *[]byte {
	c := bufClass(n)
	if c > maxBufClass {
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

// Put returns a buffer obtained from Get.
func (p *bufferPool) Put(b *[]byte) {
	c := bits.Len(uint(cap(*b))) - 1
	if c < minBufClass || c > maxBufClass || cap(*b) != 1<<c {
		return
	}
	*b = (*b)[:cap(*b)]
	p.pools[c].Put(b)
}
