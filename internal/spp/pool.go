package spp

import (
	"fmt"
	"sync"
	"time"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	"google.golang.org/grpc"
)

// Pool keeps one gRPC connection per node address. gRPC multiplexes every
// stream to a node over it and reconnects by itself after failures.
type Pool struct {
	opts  []grpc.DialOption
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// PoolIdle is how long a pooled connection may carry no call before it
// goes idle: it then closes its transport and stops reconnecting until the
// next call, so the address of a node that left (or a fake one a tracker
// listed) is not redialed for long. opts given to NewPool may override it.
const PoolIdle = 30 * time.Second

// NewPool returns a pool that dials with opts.
func NewPool(opts ...grpc.DialOption) *Pool {
	return &Pool{opts: append([]grpc.DialOption{grpc.WithIdleTimeout(PoolIdle)}, opts...), conns: map[string]*grpc.ClientConn{}}
}

// Client returns an SPP client for the node at addr.
func (p *Pool) Client(addr string) (sppv1.ChunkServiceClient, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return sppv1.NewChunkServiceClient(c), nil
	}
	c, err := grpc.NewClient(addr, p.opts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	p.conns[addr] = c
	return sppv1.NewChunkServiceClient(c), nil
}

// Close closes every connection.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for a, c := range p.conns {
		c.Close()
		delete(p.conns, a)
	}
}
