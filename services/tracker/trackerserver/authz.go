package trackerserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/nodeauth"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Who may do what (docs/security.md):
//
//   - PublishFile, UnpublishFile, PostCommand: the origin credential, an
//     origin or admin certificate, or the admin token. WatchCommands:
//     anyone (commands name published files only).
//   - Register: with mutual TLS, the id and role the certificate names
//     (a certificate naming none may join as a cachenode or edge);
//     without it, the join token when the tracker has one, else anyone,
//     as a cachenode or an edge. An origin registers with the origin
//     credential or an origin certificate. An id that is live is taken
//     over only by its holder (its secret, or a certificate naming it) or
//     the admin.
//   - Heartbeat, Announce, Unregister: the registration's secret.
//   - ReportRate: a registered node's reports (with its secret) count for
//     everyone; anyone else's only for its own ranking.

// caller is what a request proves about its sender.
type caller struct {
	peer   nodeauth.Peer
	admin  bool // admin token or admin certificate
	origin bool // origin credential or origin certificate (or admin)
	joined bool // may register a cachenode or an edge
}

func (s *Server) callerOf(ctx context.Context) caller {
	p := nodeauth.FromContext(ctx)
	c := caller{peer: p}
	c.admin = nodeauth.Presented(ctx, nodeauth.AdminTokenHeader, s.cfg.AdminToken) || (p.HasID && p.Identity.Role == nodeauth.RoleAdmin)
	c.origin = c.admin || nodeauth.Presented(ctx, nodeauth.OriginTokenHeader, s.cfg.OriginToken) || (p.HasID && p.Identity.NodeRole() == trackerv1.Role_ROLE_ORIGIN)
	c.joined = c.origin || p.TLS || s.cfg.JoinToken == "" || nodeauth.Presented(ctx, nodeauth.JoinTokenHeader, s.cfg.JoinToken)
	return c
}

// mayPublish refuses a caller that is not an origin.
func (c caller) mayPublish(what string) error {
	if c.origin {
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "%s: only an origin may publish, unpublish or post commands: present the origin credential (%s) or an origin certificate", what, nodeauth.OriginTokenHeader)
}

// mayRegister checks the caller against the node it registers.
func (c caller) mayRegister(n *trackerv1.Node) error {
	if c.peer.HasID && !c.admin {
		id := c.peer.Identity
		if id.ID != n.Id || id.NodeRole() != n.Role {
			return status.Errorf(codes.PermissionDenied, "register %s as %v: the caller's certificate names %s/%s", n.Id, n.Role, id.Role, id.ID)
		}
	}
	if n.Role == trackerv1.Role_ROLE_ORIGIN && !c.origin {
		return status.Errorf(codes.PermissionDenied, "register %s: only a holder of the origin credential or an origin certificate may register an origin", n.Id)
	}
	if !c.joined {
		return status.Errorf(codes.Unauthenticated, "register %s: this tracker requires the join token (%s)", n.Id, nodeauth.JoinTokenHeader)
	}
	return nil
}

// mayReplace reports whether the caller may take over the live
// registration of n.Id described by old.
func (c caller) mayReplace(n *trackerv1.Node, old authRecord, secret string) bool {
	switch {
	case c.admin:
		return true
	case c.peer.HasID && c.peer.Identity.ID == n.Id:
		return true
	case old.digest != "" && nodeauth.Equal(old.digest, digestOf(secret)):
		return true
	}
	return false
}

// authRecord is what the tracker keeps of a registration at
// auth/<id>, under the registration's lease: the secret's digest (never
// the secret) and the address it registered from.
type authRecord struct {
	digest string // hex SHA-256 of the secret
	addr   string
	lease  int64
}

func (a authRecord) encode() string { return "v1 " + a.digest + " " + a.addr }

func decodeAuth(v string, lease int64) (authRecord, error) {
	f := strings.Fields(v)
	if len(f) < 2 || f[0] != "v1" {
		return authRecord{}, errors.New("unknown auth record format")
	}
	a := authRecord{digest: f[1], lease: lease}
	if len(f) > 2 {
		a.addr = f[2]
	}
	return a, nil
}

func digestOf(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// secrets caches the auth records of (node, lease) pairs: a lease's
// record never changes, so a cached one is never stale, and heartbeats
// cost no etcd read to authenticate.
type secrets struct {
	mu sync.Mutex
	m  map[secretKey]authRecord
}

type secretKey struct {
	id    string
	lease int64
}

const maxCachedSecrets = 1 << 16

func (c *secrets) get(id string, lease int64) (authRecord, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.m[secretKey{id, lease}]
	return a, ok
}

func (c *secrets) put(id string, a authRecord) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxCachedSecrets {
		c.m = map[secretKey]authRecord{} // leases of departed nodes: start over
	}
	c.m[secretKey{id, a.lease}] = a
}

func (c *secrets) forget(ids []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	gone := map[string]bool{}
	for _, id := range ids {
		gone[id] = true
	}
	for k := range c.m {
		if gone[k.id] {
			delete(c.m, k)
		}
	}
}

// authOf reads the auth record of node id's registration under lease.
func (s *Server) authOf(ctx context.Context, id string, lease int64) (authRecord, error) {
	if a, ok := s.secrets.get(id, lease); ok {
		return a, nil
	}
	ectx, cancel := s.etcdCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(ectx, s.keys.auth(id))
	if err != nil {
		return authRecord{}, etcdError(err, "node %s: read auth record", id)
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].Lease != lease {
		return authRecord{}, status.Errorf(codes.NotFound, "node %s has no registration under lease %d; register again", id, lease)
	}
	a, err := decodeAuth(string(resp.Kvs[0].Value), lease)
	if err != nil {
		return authRecord{}, status.Errorf(codes.Internal, "node %s: auth record: %v", id, err)
	}
	s.secrets.put(id, a)
	return a, nil
}

// checkSecret verifies that secret is the one node id registered with
// under lease.
func (s *Server) checkSecret(ctx context.Context, what, id string, lease int64, secret string) error {
	a, err := s.authOf(ctx, id, lease)
	if err != nil {
		return err
	}
	if !nodeauth.Equal(a.digest, digestOf(secret)) {
		return status.Errorf(codes.PermissionDenied, "%s %s: wrong or missing registration secret", what, id)
	}
	return nil
}

// registrations counts live registrations made from addr, for the
// per-address limit.
func (s *Server) registrationsFrom(ctx context.Context, addr string) (int, error) {
	ectx, cancel := s.etcdCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(ectx, s.keys.prefix+authDir, clientv3.WithPrefix())
	if err != nil {
		return 0, etcdError(err, "count registrations from %s", addr)
	}
	n := 0
	for _, kv := range resp.Kvs {
		if a, err := decodeAuth(string(kv.Value), kv.Lease); err == nil && a.addr == addr {
			n++
		}
	}
	return n, nil
}

// checkCapacity refuses a registration past the registry's bounds.
func (s *Server) checkCapacity(ctx context.Context, n *trackerv1.Node, addr string, replacing bool) error {
	if replacing {
		return nil
	}
	var total int
	s.idx.read(func(st *state) { total = len(st.nodes) })
	if total >= s.cfg.MaxNodes {
		return status.Errorf(codes.ResourceExhausted, "register %s: the registry is full (%d nodes)", n.Id, s.cfg.MaxNodes)
	}
	if addr == "" || s.cfg.MaxNodesPerAddr <= 0 {
		return nil
	}
	from, err := s.registrationsFrom(ctx, addr)
	if err != nil {
		return err
	}
	if from >= s.cfg.MaxNodesPerAddr {
		return status.Errorf(codes.ResourceExhausted, "register %s: %d nodes already registered from %s, at most %d allowed", n.Id, from, addr, s.cfg.MaxNodesPerAddr)
	}
	return nil
}

// secretFor returns the registration secret to use: the node's own, or a
// new one.
func secretFor(req *trackerv1.RegisterRequest) (string, error) {
	if req.Secret == "" {
		return nodeauth.NewSecret(), nil
	}
	if len(req.Secret) < nodeauth.MinSecretLen {
		return "", fmt.Errorf("register %s: %w", req.GetNode().GetId(), nodeauth.ErrShortSecret)
	}
	return req.Secret, nil
}
