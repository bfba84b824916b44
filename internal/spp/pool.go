package spp

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	"google.golang.org/grpc"
)

// ConnsPerNode is how many gRPC connections a Pool keeps to each node.
// Every connection has one goroutine that writes all its streams' frames
// (the sender's) and one that reads them (the receiver's); with every
// stream to a node on one connection, those two goroutines carried all
// the node's bytes, and under load the senders' Fetch handlers queued
// behind that one writer (block profiles of a cachenode serving an edge
// 50 requests at a time: most handler time was spent waiting for gRPC's
// writer, which was never idle). Streams are spread over the connections
// round robin.
const ConnsPerNode = 4

// Pool keeps ConnsPerNode gRPC connections per node address. gRPC
// multiplexes the streams of each over it and reconnects by itself after
// failures.
type Pool struct {
	opts  []grpc.DialOption
	mu    sync.Mutex
	nodes map[string]*conns
}

// PoolIdle is how long a pooled connection may carry no call before it
// goes idle: it then closes its transport and stops reconnecting until the
// next call, so the address of a node that left (or a fake one a tracker
// listed) is not redialed for long. opts given to NewPool may override it.
const PoolIdle = 30 * time.Second

// NewPool returns a pool that dials with opts.
func NewPool(opts ...grpc.DialOption) *Pool {
	return &Pool{opts: append([]grpc.DialOption{grpc.WithIdleTimeout(PoolIdle)}, opts...), nodes: map[string]*conns{}}
}

// Client returns an SPP client for the node at addr.
func (p *Pool) Client(addr string) (sppv1.ChunkServiceClient, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n, ok := p.nodes[addr]; ok {
		return sppv1.NewChunkServiceClient(n), nil
	}
	n := &conns{}
	for range ConnsPerNode {
		c, err := grpc.NewClient(addr, p.opts...)
		if err != nil {
			n.close()
			return nil, fmt.Errorf("dial %s: %w", addr, err)
		}
		// Connect them all now, in parallel, so the streams that come
		// after the first do not each wait for a handshake.
		c.Connect()
		n.cs = append(n.cs, c)
	}
	p.nodes[addr] = n
	return sppv1.NewChunkServiceClient(n), nil
}

// Close closes every connection.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for a, n := range p.nodes {
		n.close()
		delete(p.nodes, a)
	}
}

// conns are the connections to one node: a grpc.ClientConnInterface that
// puts each call on the next one.
type conns struct {
	cs   []*grpc.ClientConn
	next atomic.Uint32
}

func (n *conns) pick() *grpc.ClientConn {
	return n.cs[int(n.next.Add(1)-1)%len(n.cs)]
}

func (n *conns) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return n.pick().Invoke(ctx, method, args, reply, opts...)
}

func (n *conns) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return n.pick().NewStream(ctx, desc, method, opts...)
}

func (n *conns) close() {
	for _, c := range n.cs {
		c.Close()
	}
}
