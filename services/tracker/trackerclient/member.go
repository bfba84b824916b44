package trackerclient

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/buildinfo"
	"github.com/p2pd/p2pd/internal/nodeauth"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// HaveFunc returns the node's full current holdings; called after
// (re-)registration. Join accepts nil for a node that announces only
// through Update (it then cannot restore its holdings after a lost lease).
type HaveFunc func() []*trackerv1.Have

// Member keeps one node registered with the trackers.
type Member struct {
	c     *Client
	cfg   Config
	node  *trackerv1.Node
	haves HaveFunc

	cancel context.CancelFunc
	done   chan struct{}
	kick   chan struct{} // something was queued; capacity 1

	mu      sync.Mutex
	pending map[string]*trackerv1.Have // by root
	load    uint32
	held    uint64

	// secret proves to the trackers that calls come from this node: chosen
	// once, kept across re-registrations, so a registration whose answer
	// was lost can be taken over by this node and nobody else.
	secret string

	lease      atomic.Int64 // current lease; 0 when not registered
	registered atomic.Bool
	closeOnce  sync.Once
}

// Join keeps node registered in the background: registers (retrying with
// backoff while trackers are unreachable), heartbeats at ttl/3 with current
// load, re-registers and re-announces everything (via haves) when the lease
// is lost, and batches updates. When ctx ends it stops heartbeating and the
// lease expires; Close also revokes the lease at once.
func (c *Client) Join(ctx context.Context, node *trackerv1.Node, haves HaveFunc) *Member {
	return c.JoinWith(ctx, node, haves, Config{})
}

// JoinWith is Join with tuning.
func (c *Client) JoinWith(ctx context.Context, node *trackerv1.Node, haves HaveFunc, cfg Config) *Member {
	cfg.applyDefaults()
	node = proto.Clone(node).(*trackerv1.Node)
	if node.UpSinceUnixNano == 0 {
		// Set once here so re-registrations keep the node's real age.
		node.UpSinceUnixNano = time.Now().UnixNano()
	}
	if node.Version == "" {
		node.Version = buildinfo.Read().Version
	}
	ctx, cancel := context.WithCancel(ctx)
	m := &Member{
		c: c, cfg: cfg, node: node, haves: haves,
		cancel: cancel, done: make(chan struct{}), kick: make(chan struct{}, 1),
		pending: map[string]*trackerv1.Have{},
		secret:  nodeauth.NewSecret(),
		load:    node.Load, held: node.HeldBytes,
	}
	go m.run(ctx)
	return m
}

// Update queues one root's full bitmap (latest per root wins); flushed in
// one Announce within 250ms (Config.FlushDelay).
func (m *Member) Update(h *trackerv1.Have) {
	m.mu.Lock()
	m.pending[string(h.GetRoot())] = h
	m.mu.Unlock()
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// SetLoad records the node's load (active streams) and held bytes for the
// next heartbeat.
func (m *Member) SetLoad(load uint32, heldBytes uint64) {
	m.mu.Lock()
	m.load, m.held = load, heldBytes
	m.mu.Unlock()
}

// ReportRate sends in's samples as this node, with its lease and secret,
// so they count for everyone's ranking (a RateReporter). It fails while
// the node is not registered.
func (m *Member) ReportRate(ctx context.Context, in *trackerv1.ReportRateRequest, opts ...grpc.CallOption) (*trackerv1.ReportRateResponse, error) {
	lease := m.lease.Load()
	if lease == 0 {
		return nil, errors.New("report rates: not registered with a tracker")
	}
	return m.c.ReportRate(ctx, &trackerv1.ReportRateRequest{Reporter: m.node.Id, Samples: in.GetSamples(), LeaseId: lease, Secret: m.secret}, opts...)
}

// Registered reports whether the node holds a live registration.
func (m *Member) Registered() bool { return m.registered.Load() }

// Close stops the member and revokes its lease, so the node and its
// holdings disappear at once rather than when the lease expires.
func (m *Member) Close() {
	m.closeOnce.Do(func() {
		m.cancel()
		<-m.done
		m.registered.Store(false)
		lease := m.lease.Swap(0)
		if lease == 0 {
			return
		}
		// The Join context is usually done by now: revoke on a fresh one.
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.CallTimeout)
		defer cancel()
		if _, err := m.c.Unregister(ctx, &trackerv1.UnregisterRequest{NodeId: m.node.Id, LeaseId: lease, Secret: m.secret}); err != nil {
			m.cfg.Logger.Warn("tracker: unregister failed; the lease will expire", "node", m.node.Id, "err", err)
		}
	})
}

// run registers, serves the registration until its lease is lost, and
// starts over, until ctx ends.
func (m *Member) run(ctx context.Context) {
	defer close(m.done)
	bo := m.backoff()
	for ctx.Err() == nil {
		resp, err := m.register(ctx)
		if err != nil {
			if ctx.Err() == nil {
				m.cfg.Logger.Warn("tracker: register failed", "node", m.node.Id, "err", err, "retry_in", bo.peek())
			}
			bo.wait(ctx)
			continue
		}
		bo.reset()
		m.lease.Store(resp.LeaseId)
		m.registered.Store(true)
		m.cfg.Logger.Info("tracker: registered", "node", m.node.Id, "lease", resp.LeaseId, "ttl_s", resp.TtlSeconds)
		m.serve(ctx, resp.LeaseId, time.Duration(resp.TtlSeconds)*time.Second)
		m.registered.Store(false)
		if ctx.Err() == nil {
			m.lease.Store(0)
			m.cfg.Logger.Warn("tracker: lease lost; registering again", "node", m.node.Id)
		}
	}
}

func (m *Member) register(ctx context.Context) (*trackerv1.RegisterResponse, error) {
	m.mu.Lock()
	m.node.Load, m.node.HeldBytes = m.load, m.held
	m.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, m.cfg.CallTimeout)
	defer cancel()
	return m.c.Register(cctx, &trackerv1.RegisterRequest{Node: m.node, Secret: m.secret})
}

// serve heartbeats and flushes queued holdings under one lease; it returns
// when the lease is lost or ctx ends.
func (m *Member) serve(ctx context.Context, lease int64, ttl time.Duration) {
	if ttl <= 0 {
		ttl = 10 * time.Second
	}
	interval := ttl / 3

	// A fresh lease has no holdings: announce everything. Queued updates
	// are dropped first, since haves() already reflects them; updates
	// queued from here on are flushed as usual. Without a HaveFunc only
	// the queue can be sent.
	if m.haves != nil {
		m.mu.Lock()
		clear(m.pending)
		m.mu.Unlock()
		if lost, _ := m.announce(ctx, lease, m.haves()); lost {
			return
		}
	} else {
		select {
		case m.kick <- struct{}{}:
		default:
		}
	}

	hb := time.NewTimer(interval)
	defer hb.Stop()
	flush := time.NewTimer(0)
	flush.Stop()
	defer flush.Stop()
	flushArmed := false
	bo := m.backoff()
	hbFailures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-hb.C:
			err := m.heartbeat(ctx, lease, min(interval, m.cfg.CallTimeout))
			switch {
			case status.Code(err) == codes.NotFound:
				return
			case err != nil && ctx.Err() == nil:
				// Retry well before the lease can run out; say so once per
				// outage, not every second.
				lvl := slog.LevelDebug
				if hbFailures == 0 {
					lvl = slog.LevelWarn
				}
				hbFailures++
				m.cfg.Logger.Log(ctx, lvl, "tracker: heartbeat failed", "node", m.node.Id, "err", err)
				hb.Reset(min(interval, time.Second))
			default:
				if hbFailures > 0 {
					m.cfg.Logger.Info("tracker: heartbeats back", "node", m.node.Id, "failed", hbFailures)
				}
				hbFailures = 0
				hb.Reset(interval)
			}
		case <-m.kick:
			if !flushArmed {
				flush.Reset(m.cfg.FlushDelay)
				flushArmed = true
			}
		case <-flush.C:
			flushArmed = false
			m.mu.Lock()
			batch := make([]*trackerv1.Have, 0, len(m.pending))
			for _, h := range m.pending {
				batch = append(batch, h)
			}
			clear(m.pending)
			m.mu.Unlock()
			if len(batch) == 0 {
				continue
			}
			lost, retry := m.announce(ctx, lease, batch)
			switch {
			case lost:
				return
			case retry:
				flush.Reset(bo.next())
				flushArmed = true
			default:
				bo.reset()
			}
		}
	}
}

func (m *Member) heartbeat(ctx context.Context, lease int64, timeout time.Duration) error {
	m.mu.Lock()
	req := &trackerv1.HeartbeatRequest{NodeId: m.node.Id, LeaseId: lease, Load: m.load, HeldBytes: m.held, Secret: m.secret}
	m.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := m.c.Heartbeat(cctx, req)
	return err
}

// announce sends haves in as few calls as the limits allow. Holdings that
// could not be delivered for a passing reason are queued again (unless a
// newer bitmap for the same root is queued already); holdings the tracker
// rejects as invalid are dropped with a log. It reports whether the lease
// is lost, and whether some holdings were queued again.
func (m *Member) announce(ctx context.Context, lease int64, haves []*trackerv1.Have) (lost, retry bool) {
	for _, batch := range m.split(haves) {
		err := m.send(ctx, lease, batch)
		if status.Code(err) == codes.InvalidArgument && len(batch) > 1 {
			// One bad bitmap must not keep the others from the tracker.
			for _, h := range batch {
				l, r := m.handle(ctx, []*trackerv1.Have{h}, m.send(ctx, lease, []*trackerv1.Have{h}))
				if l {
					return true, retry
				}
				retry = retry || r
			}
			continue
		}
		l, r := m.handle(ctx, batch, err)
		if l {
			return true, retry
		}
		retry = retry || r
	}
	return false, retry
}

// handle acts on the outcome of sending batch, as announce describes.
func (m *Member) handle(ctx context.Context, batch []*trackerv1.Have, err error) (lost, retry bool) {
	switch {
	case err == nil:
		return false, false
	case status.Code(err) == codes.NotFound:
		return true, false
	case status.Code(err) == codes.InvalidArgument:
		m.cfg.Logger.Error("tracker: holdings rejected", "node", m.node.Id, "err", err)
		return false, false
	}
	if ctx.Err() == nil {
		m.cfg.Logger.Warn("tracker: announce failed; will retry", "node", m.node.Id, "err", err)
	}
	m.requeue(batch)
	return false, true
}

func (m *Member) send(ctx context.Context, lease int64, haves []*trackerv1.Have) error {
	cctx, cancel := context.WithTimeout(ctx, m.cfg.CallTimeout)
	defer cancel()
	_, err := m.c.Announce(cctx, &trackerv1.AnnounceRequest{NodeId: m.node.Id, LeaseId: lease, Haves: haves, Secret: m.secret})
	return err
}

// requeue puts undelivered holdings back unless newer ones are queued,
// and makes sure a flush follows.
func (m *Member) requeue(haves []*trackerv1.Have) {
	m.mu.Lock()
	for _, h := range haves {
		if _, newer := m.pending[string(h.GetRoot())]; !newer {
			m.pending[string(h.GetRoot())] = h
		}
	}
	m.mu.Unlock()
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// split cuts haves into batches within the tracker's limits. A root given
// twice keeps its last bitmap, since the tracker refuses duplicates.
func (m *Member) split(haves []*trackerv1.Have) [][]*trackerv1.Have {
	last := map[string]int{}
	for i, h := range haves {
		last[string(h.GetRoot())] = i
	}
	var out [][]*trackerv1.Have
	var cur []*trackerv1.Have
	size := 0
	for i, h := range haves {
		if last[string(h.GetRoot())] != i {
			continue
		}
		n := len(h.GetBitmap())
		if len(cur) > 0 && (len(cur) >= m.cfg.MaxHavesPerAnnounce || size+n > m.cfg.MaxAnnounceBytes) {
			out = append(out, cur)
			cur, size = nil, 0
		}
		cur = append(cur, h)
		size += n
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// backoff is capped exponential backoff with jitter, so many nodes that
// lost the same tracker do not come back in lockstep.
type backoff struct {
	min, max, cur time.Duration
}

func (m *Member) backoff() *backoff {
	return &backoff{min: m.cfg.MinBackoff, max: m.cfg.MaxBackoff, cur: m.cfg.MinBackoff}
}

func (b *backoff) peek() time.Duration { return b.cur }

// next returns the wait before the next retry and doubles the one after.
func (b *backoff) next() time.Duration {
	d := b.cur/2 + rand.N(b.cur/2+1)
	b.cur = min(2*b.cur, b.max)
	return d
}

func (b *backoff) reset() { b.cur = b.min }

// wait sleeps for next() or until ctx ends.
func (b *backoff) wait(ctx context.Context) {
	t := time.NewTimer(b.next())
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
