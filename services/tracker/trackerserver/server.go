// Package trackerserver is the tracker: a stateless gRPC front to etcd.
// Nodes register under a lease, so a dead node and everything it announced
// vanish when the lease expires; holdings are compressed bitmaps per (file
// root, node) written in batches; Locate answers from an in-memory index
// kept current by an etcd watch, ranking sources with internal/rank.
//
// Several trackers may serve the same etcd: the only state they keep apart
// from the index is the rate and health of nodes as reported to each.
package trackerserver

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"time"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// readYourWritesWait bounds how long a write RPC waits for the index to
// show its own write. Past it the write still succeeded; the index is
// merely behind, and Locate on this tracker catches up moments later.
const readYourWritesWait = 2 * time.Second

// Server implements trackerv1.TrackerServiceServer over an etcd client.
// Call Run to keep its index current; RPCs that read the index wait until
// the first listing is loaded.
type Server struct {
	trackerv1.UnimplementedTrackerServiceServer

	cfg  Config
	cli  *clientv3.Client
	keys keys
	idx  *index

	secrets secrets
	probe   *prober // nil unless Config.ProbeNodes

	mu        sync.Mutex
	stats     map[string]*nodeStats // by node id
	reporters map[string]*reporter  // by reporter id
}

// New returns a tracker storing its state in etcd through cli.
func New(cli *clientv3.Client, cfg Config) *Server {
	cfg.applyDefaults()
	s := &Server{cfg: cfg, cli: cli, keys: keys{prefix: cfg.Prefix}, stats: map[string]*nodeStats{}, reporters: map[string]*reporter{}}
	if cfg.ProbeNodes {
		s.probe = newProber(cfg.ProbeDialOptions, cfg.Now)
	}
	s.idx = newIndex(s.keys, cfg.MaxChunkCount, cfg.Logger, s.forget)
	if s.probe != nil {
		// A node is probed as soon as it registers (or a relisting finds
		// it), so it is usually reachable by the time anyone asks for it:
		// an unprobed node is not ranked.
		s.idx.onNodeSeen = func(n *trackerv1.Node) {
			if n.GetGrpcAddr() != "" {
				s.probe.reachable([]string{n.GetId()}, func(string) string { return n.GetGrpcAddr() })
			}
		}
	}
	return s
}

// Run keeps the in-memory index in sync with etcd until ctx ends. It
// retries by itself while etcd is unreachable and returns nil when ctx
// ends.
func (s *Server) Run(ctx context.Context) error {
	if s.probe != nil {
		done := make(chan struct{})
		go func() { defer close(done); s.probe.run(ctx) }()
		defer func() { <-done }()
	}
	s.idx.run(ctx, s.cli, s.cfg.EtcdTimeout)
	return nil
}

// Ready reports whether the index has been loaded.
func (s *Server) Ready() bool {
	select {
	case <-s.idx.ready:
		return true
	default:
		return false
	}
}

// WaitReady waits until the index has been loaded or ctx ends.
func (s *Server) WaitReady(ctx context.Context) error { return s.idx.waitReady(ctx) }

// ready is WaitReady for RPCs: a tracker that cannot reach etcd answers
// Unavailable, so clients fail over to another tracker.
func (s *Server) ready(ctx context.Context) error {
	if err := s.idx.waitReady(ctx); err != nil {
		return status.Errorf(codes.Unavailable, "tracker index not loaded from etcd yet: %v", err)
	}
	return nil
}

// afterWrite waits, briefly, for the index to reflect a write at rev.
func (s *Server) afterWrite(ctx context.Context, rev int64) {
	wctx, cancel := context.WithTimeout(ctx, readYourWritesWait)
	defer cancel()
	_ = s.idx.waitRev(wctx, rev)
}

// etcdError turns an etcd failure into a gRPC status naming what failed.
func etcdError(err error, format string, args ...any) error {
	what := fmt.Sprintf(format, args...)
	switch {
	case errors.Is(err, rpctypes.ErrLeaseNotFound):
		return status.Errorf(codes.NotFound, "%s: lease expired or revoked; register again", what)
	case errors.Is(err, rpctypes.ErrTooManyOps), errors.Is(err, rpctypes.ErrRequestTooLarge):
		return status.Errorf(codes.InvalidArgument, "%s: too large for one etcd transaction: %v", what, err)
	case errors.Is(err, context.Canceled):
		return status.Errorf(codes.Canceled, "%s: %v", what, err)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Errorf(codes.DeadlineExceeded, "%s: %v", what, err)
	}
	return status.Errorf(codes.Unavailable, "%s: etcd: %v", what, err)
}

// etcdCtx bounds one etcd request.
func (s *Server) etcdCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.EtcdTimeout)
}

// Register grants the node a lease and writes its record and auth record
// under it. A live registration of the same id is replaced only when the
// caller proves it is that node (see authz.go); the replaced lease is
// revoked, so holdings the node no longer announces do not linger.
func (s *Server) Register(ctx context.Context, req *trackerv1.RegisterRequest) (*trackerv1.RegisterResponse, error) {
	n := req.GetNode()
	if err := checkNode(n); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "register: %v", err)
	}
	c := s.callerOf(ctx)
	if err := c.mayRegister(n); err != nil {
		return nil, err
	}
	secret, err := secretFor(req)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	n = proto.Clone(n).(*trackerv1.Node)
	if n.UpSinceUnixNano == 0 {
		n.UpSinceUnixNano = s.cfg.Now().UnixNano()
	}
	val, err := proto.Marshal(n)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "register %s: marshal node: %v", n.Id, err)
	}
	ectx, cancel := s.etcdCtx(ctx)
	defer cancel()
	key, akey := s.keys.node(n.Id), s.keys.auth(n.Id)
	cur, err := s.cli.Txn(ectx).Then(clientv3.OpGet(key), clientv3.OpGet(akey)).Commit()
	if err != nil {
		return nil, etcdError(err, "register %s: read node", n.Id)
	}
	var oldLease, oldRev int64
	if kvs := cur.Responses[0].GetResponseRange().GetKvs(); len(kvs) > 0 {
		oldLease, oldRev = kvs[0].Lease, kvs[0].ModRevision
	}
	var old authRecord
	if kvs := cur.Responses[1].GetResponseRange().GetKvs(); len(kvs) > 0 && kvs[0].Lease == oldLease {
		old, _ = decodeAuth(string(kvs[0].Value), kvs[0].Lease)
	}
	if oldLease != 0 && !c.mayReplace(n, old, req.Secret) {
		return nil, status.Errorf(codes.AlreadyExists, "register %s: a live node holds this id; only that node (its registration secret or certificate) may register it again, or wait until its lease expires", n.Id)
	}
	if err := s.checkCapacity(ctx, n, c.peer.Addr, oldLease != 0); err != nil {
		return nil, err
	}
	lease, err := s.cli.Grant(ectx, int64((s.cfg.LeaseTTL+time.Second-1)/time.Second))
	if err != nil {
		return nil, etcdError(err, "register %s: grant lease", n.Id)
	}
	auth := authRecord{digest: digestOf(secret), addr: c.peer.Addr, lease: int64(lease.ID)}
	// The record must still be the one judged above: a concurrent
	// registration of the same id loses rather than replaces unchecked.
	resp, err := s.cli.Txn(ectx).If(clientv3.Compare(clientv3.ModRevision(key), "=", oldRev)).Then(
		clientv3.OpPut(key, string(val), clientv3.WithLease(lease.ID)),
		clientv3.OpPut(akey, auth.encode(), clientv3.WithLease(lease.ID)),
	).Commit()
	if err == nil && !resp.Succeeded {
		err = errRegisterRace
	}
	if err != nil {
		s.cli.Revoke(ectx, lease.ID)
		if errors.Is(err, errRegisterRace) {
			return nil, status.Errorf(codes.Aborted, "register %s: registered concurrently by another call; try again", n.Id)
		}
		return nil, etcdError(err, "register %s: put node", n.Id)
	}
	if oldLease != 0 && oldLease != int64(lease.ID) {
		if _, err := s.cli.Revoke(ectx, clientv3.LeaseID(oldLease)); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			s.cfg.Logger.Warn("register: revoking previous lease", "node", n.Id, "lease", oldLease, "err", err)
		}
	}
	s.secrets.put(n.Id, auth)
	s.afterWrite(ctx, resp.Header.Revision)
	s.cfg.Logger.Info("node registered", "node", n.Id, "role", n.Role, "grpc_addr", n.GrpcAddr, "lease", int64(lease.ID), "from", c.peer.Addr)
	return &trackerv1.RegisterResponse{LeaseId: int64(lease.ID), TtlSeconds: lease.TTL, Secret: secret}, nil
}

var errRegisterRace = errors.New("concurrent registration")

// checkNode validates a node record sent by the node itself.
func checkNode(n *trackerv1.Node) error {
	if n == nil {
		return errors.New("node is missing")
	}
	if err := checkNodeID(n.Id); err != nil {
		return err
	}
	if _, ok := trackerv1.Role_name[int32(n.Role)]; !ok || n.Role == trackerv1.Role_ROLE_UNSPECIFIED {
		return fmt.Errorf("node %s: role %v is not a known role", n.Id, n.Role)
	}
	if n.Role != trackerv1.Role_ROLE_EDGE && n.GrpcAddr == "" {
		return fmt.Errorf("node %s: grpc_addr is required for a %v, other nodes fetch from it", n.Id, n.Role)
	}
	return nil
}

// lookupNode finds a node's record and lease: from the index when it
// shows the expected lease, otherwise from etcd, since the index may not
// have seen a registration made through another tracker a moment ago.
func (s *Server) lookupNode(ctx context.Context, id string, lease int64) (nodeEntry, bool, error) {
	var e nodeEntry
	var ok bool
	if s.Ready() {
		s.idx.read(func(st *state) { e, ok = st.nodes[id] })
		if ok && e.lease == lease {
			return e, true, nil
		}
	}
	ectx, cancel := s.etcdCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(ectx, s.keys.node(id))
	if err != nil {
		return e, false, err
	}
	if len(resp.Kvs) == 0 {
		return e, false, nil
	}
	n := &trackerv1.Node{}
	if err := proto.Unmarshal(resp.Kvs[0].Value, n); err != nil {
		return e, false, fmt.Errorf("node %s record: %w", id, err)
	}
	return nodeEntry{node: n, lease: resp.Kvs[0].Lease}, true, nil
}

// checkLease verifies that lease is the one node id is registered with,
// and that secret is that registration's.
func (s *Server) checkLease(ctx context.Context, what, id string, lease int64, secret string) (nodeEntry, error) {
	if err := checkNodeID(id); err != nil {
		return nodeEntry{}, status.Errorf(codes.InvalidArgument, "%s: %v", what, err)
	}
	if lease == 0 {
		return nodeEntry{}, status.Errorf(codes.InvalidArgument, "%s %s: lease_id is missing", what, id)
	}
	e, ok, err := s.lookupNode(ctx, id, lease)
	switch {
	case err != nil:
		return e, etcdError(err, "%s %s: read node", what, id)
	case !ok:
		return e, status.Errorf(codes.NotFound, "%s: node %s is not registered; register again", what, id)
	case e.lease != lease:
		return e, status.Errorf(codes.NotFound, "%s: lease %d is not node %s's current lease; register again", what, lease, id)
	}
	return e, s.checkSecret(ctx, what, id, lease, secret)
}

// Heartbeat keeps the node's lease alive and records its load. The node
// record is rewritten only when the load or held bytes changed enough to
// matter, so steady heartbeats cost etcd one keep-alive and nothing else.
func (s *Server) Heartbeat(ctx context.Context, req *trackerv1.HeartbeatRequest) (*trackerv1.HeartbeatResponse, error) {
	e, err := s.checkLease(ctx, "heartbeat", req.NodeId, req.LeaseId, req.Secret)
	if err != nil {
		return nil, err
	}
	ectx, cancel := s.etcdCtx(ctx)
	defer cancel()
	if _, err := s.cli.KeepAliveOnce(ectx, clientv3.LeaseID(req.LeaseId)); err != nil {
		return nil, etcdError(err, "heartbeat %s: keep lease %d alive", req.NodeId, req.LeaseId)
	}
	if !notableChange(e.node, req.Load, req.HeldBytes) {
		return &trackerv1.HeartbeatResponse{}, nil
	}
	n := proto.Clone(e.node).(*trackerv1.Node)
	n.Load, n.HeldBytes = req.Load, req.HeldBytes
	val, err := proto.Marshal(n)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "heartbeat %s: marshal node: %v", n.Id, err)
	}
	resp, err := s.cli.Put(ectx, s.keys.node(n.Id), string(val), clientv3.WithLease(clientv3.LeaseID(req.LeaseId)))
	if err != nil {
		return nil, etcdError(err, "heartbeat %s: update node", n.Id)
	}
	s.afterWrite(ctx, resp.Header.Revision)
	return &trackerv1.HeartbeatResponse{}, nil
}

// notableChange reports whether a node's load or held bytes moved enough
// to rewrite its record: the load crossed one of rank's load buckets
// (powers of two, what ranking looks at), or held bytes moved by 1/16.
func notableChange(n *trackerv1.Node, load uint32, held uint64) bool {
	if bits.Len32(n.Load) != bits.Len32(load) {
		return true
	}
	old := n.HeldBytes
	diff := max(old, held) - min(old, held)
	return diff > old/16
}

// Unregister revokes the node's lease: its record and holdings go at once.
// Only the registration's holder (its secret) or the admin may; a lease
// that is not the node's current one is left alone. Unregistering a node
// already gone succeeds.
func (s *Server) Unregister(ctx context.Context, req *trackerv1.UnregisterRequest) (*trackerv1.UnregisterResponse, error) {
	if err := checkNodeID(req.NodeId); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "unregister: %v", err)
	}
	if req.LeaseId == 0 {
		return nil, status.Errorf(codes.InvalidArgument, "unregister %s: lease_id is missing", req.NodeId)
	}
	e, ok, err := s.lookupNode(ctx, req.NodeId, req.LeaseId)
	switch {
	case err != nil:
		return nil, etcdError(err, "unregister %s: read node", req.NodeId)
	case !ok || e.lease != req.LeaseId:
		// Gone already, or registered again since: nothing of this
		// registration is left to revoke.
		return &trackerv1.UnregisterResponse{}, nil
	}
	if !s.callerOf(ctx).admin {
		if err := s.checkSecret(ctx, "unregister", req.NodeId, req.LeaseId, req.Secret); err != nil {
			return nil, err
		}
	}
	ectx, cancel := s.etcdCtx(ctx)
	defer cancel()
	resp, err := s.cli.Revoke(ectx, clientv3.LeaseID(req.LeaseId))
	switch {
	case errors.Is(err, rpctypes.ErrLeaseNotFound):
	case err != nil:
		return nil, etcdError(err, "unregister %s: revoke lease %d", req.NodeId, req.LeaseId)
	default:
		s.afterWrite(ctx, resp.Header.Revision)
		s.cfg.Logger.Info("node unregistered", "node", req.NodeId, "lease", req.LeaseId)
	}
	return &trackerv1.UnregisterResponse{}, nil
}
