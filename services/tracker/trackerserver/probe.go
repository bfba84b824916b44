package trackerserver

import (
	"context"
	"slices"
	"sync"
	"time"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/bitmap"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// With Config.ProbeNodes the tracker ranks only nodes it has reached
// itself: a node is probed (a gRPC health check on its grpc_addr) when it
// registers and before it is ranked, is dropped from ranking at the first
// failure a registered node reports about it, and returns only once a
// probe answers again. A reporter's word never keeps a node out: it only
// makes the tracker look, and a node that answered a probe is not dropped
// again on a report for probeTrust. A registration with nothing listening
// (a fake node) is never handed to anyone.
const (
	probeTimeout = time.Second
	// probeEvery is how often an unreachable node is probed again (and
	// the least time between two probes of one node).
	probeEvery = time.Second
	// probeTrust: after a probe answered, failure reports about the node
	// are not enough to drop it for this long (probation still applies).
	probeTrust = 10 * time.Second
)

// reach is what the tracker knows of one node's reachability.
type reach struct {
	addr     string
	ok       bool // the last probe answered
	answered time.Time
	probed   time.Time
	inflight bool
}

// prober keeps the reachability of the nodes.
type prober struct {
	dial []grpc.DialOption
	now  func() time.Time
	kick chan struct{}

	mu    sync.Mutex
	nodes map[string]*reach
	conns map[string]*grpc.ClientConn // by address, while the node lives
}

func newProber(dial []grpc.DialOption, now func() time.Time) *prober {
	return &prober{dial: dial, now: now, kick: make(chan struct{}, 1), nodes: map[string]*reach{}, conns: map[string]*grpc.ClientConn{}}
}

// reachable reports which of ids may be ranked; nodes not seen yet are
// queued for their first probe.
func (p *prober) reachable(ids []string, addr func(string) string) map[string]bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]bool, len(ids))
	queued := false
	for _, id := range ids {
		r := p.nodes[id]
		if r == nil || r.addr != addr(id) {
			p.nodes[id] = &reach{addr: addr(id)}
			queued = true
			continue
		}
		out[id] = r.ok
	}
	if queued {
		p.wake()
	}
	return out
}

// failed records a failure reported about id; trusted reports (from a
// registered node) drop it from ranking until a probe answers.
func (p *prober) failed(id string, trusted bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.nodes[id]
	if r == nil {
		return
	}
	if trusted && r.ok && p.now().Sub(r.answered) >= probeTrust {
		r.ok = false
	}
	if p.now().Sub(r.probed) >= probeEvery {
		r.probed = time.Time{} // look again now
		p.wake()
	}
}

func (p *prober) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// forget drops nodes that left, and the connections to their addresses.
func (p *prober) forget(ids []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range ids {
		if r := p.nodes[id]; r != nil {
			if c := p.conns[r.addr]; c != nil {
				c.Close()
				delete(p.conns, r.addr)
			}
			delete(p.nodes, id)
		}
	}
}

// run probes the nodes that need it until ctx ends.
func (p *prober) run(ctx context.Context) {
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	defer func() {
		p.mu.Lock()
		for a, c := range p.conns {
			c.Close()
			delete(p.conns, a)
		}
		p.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.kick:
		}
		p.mu.Lock()
		now := p.now()
		for id, r := range p.nodes {
			if r.inflight || !r.probed.IsZero() && (r.ok || now.Sub(r.probed) < probeEvery) {
				continue
			}
			r.inflight, r.probed = true, now
			c := p.conns[r.addr]
			if c == nil {
				var err error
				if c, err = grpc.NewClient(r.addr, p.dial...); err != nil {
					r.inflight = false
					continue
				}
				p.conns[r.addr] = c
			}
			go p.probe(ctx, id, r.addr, c)
		}
		p.mu.Unlock()
	}
}

// probe asks the node's health service once. Any answer, even an error
// status from the node, shows the node is there; only a failed connection
// or silence does not.
func (p *prober) probe(ctx context.Context, id, addr string, c *grpc.ClientConn) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	_, err := healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(false))
	code := status.Code(err)
	ok := code != codes.Unavailable && code != codes.DeadlineExceeded && code != codes.Canceled
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.nodes[id]
	if r == nil || r.addr != addr {
		return
	}
	r.inflight, r.ok = false, ok
	if ok {
		r.answered = p.now()
	}
}

// reachableOnly drops from a Locate's candidates (and relay homes) the
// nodes the tracker has not reached; the requester is kept as a home.
func (s *Server) reachableOnly(nodes []*trackerv1.Node, held []*bitmap.Bitmap, homes []string, requester string) ([]*trackerv1.Node, []*bitmap.Bitmap, []string) {
	addrs := make(map[string]string, len(nodes))
	ids := make([]string, len(nodes))
	for i, n := range nodes {
		ids[i], addrs[n.Id] = n.Id, n.GrpcAddr
	}
	ok := s.probe.reachable(ids, func(id string) string { return addrs[id] })
	keep := 0
	for i, n := range nodes {
		if ok[n.Id] {
			nodes[keep], held[keep] = n, held[i]
			keep++
		}
	}
	homes = slices.DeleteFunc(homes, func(id string) bool { return id != requester && !ok[id] })
	return nodes[:keep], held[:keep], homes
}
