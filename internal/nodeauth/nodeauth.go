// Package nodeauth says who is calling a p2pd gRPC service: the role and
// node id a mutual TLS certificate names, and the shared tokens a caller
// may present in gRPC metadata (the origin credential, the admin token,
// the join token). The tracker decides with them what a caller may do;
// docs/security.md has the whole scheme.
//
// A node certificate names its holder with a URI subject alternative name
// p2pd://ROLE/ID, ROLE one of origin, cachenode, edge or admin, and ID the
// node id it registers (any id for admin). A certificate without such a
// URI is a member of the cluster with no role: it may join as a cachenode
// or an edge under any free id, never as an origin.
package nodeauth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// Metadata keys of the shared tokens.
const (
	// OriginTokenHeader carries the origin credential: the secret an
	// origin presents to publish and unpublish files.
	OriginTokenHeader = "p2pd-origin-token"
	// AdminTokenHeader carries the admin token; it may do what an origin
	// may, and replace or remove any node.
	AdminTokenHeader = "p2pd-admin-token"
	// JoinTokenHeader carries the join token, which gates registration
	// when the tracker has one.
	JoinTokenHeader = "p2pd-join-token"
)

// Environment variables holding tokens when no file is given.
const (
	OriginTokenEnv = "P2PD_ORIGIN_TOKEN"
	JoinTokenEnv   = "P2PD_JOIN_TOKEN"
)

// Scheme is the URI scheme of the identity in a node certificate.
const Scheme = "p2pd"

// RoleAdmin is the certificate role of an operator's tool: not a node
// role, it may do anything an origin may and replace any node.
const RoleAdmin = "admin"

// Identity is who a certificate says the caller is.
type Identity struct {
	// Role is "origin", "cachenode", "edge" or "admin".
	Role string
	// ID is the node id the certificate holder registers.
	ID string
}

// NodeRole returns the tracker role of a node identity
// (ROLE_UNSPECIFIED for admin).
func (i Identity) NodeRole() trackerv1.Role {
	switch i.Role {
	case "origin":
		return trackerv1.Role_ROLE_ORIGIN
	case "cachenode":
		return trackerv1.Role_ROLE_CACHENODE
	case "edge":
		return trackerv1.Role_ROLE_EDGE
	}
	return trackerv1.Role_ROLE_UNSPECIFIED
}

// URI returns the subject alternative name URI naming role and id.
func URI(role, id string) *url.URL {
	return &url.URL{Scheme: Scheme, Host: role, Path: "/" + id}
}

// FromCert returns the identity a certificate names, if any.
func FromCert(c *x509.Certificate) (Identity, bool) {
	for _, u := range c.URIs {
		if u.Scheme != Scheme {
			continue
		}
		id := strings.TrimPrefix(u.Path, "/")
		switch u.Host {
		case "origin", "cachenode", "edge", RoleAdmin:
		default:
			continue
		}
		if id == "" && u.Host != RoleAdmin {
			continue
		}
		return Identity{Role: u.Host, ID: id}, true
	}
	return Identity{}, false
}

// Peer describes a caller as the transport saw it.
type Peer struct {
	// TLS reports a verified client certificate (mutual TLS).
	TLS bool
	// Identity is what the certificate names; ok is false when it names
	// no p2pd identity.
	Identity Identity
	HasID    bool
	// Addr is the caller's host (no port), for per-address limits.
	Addr string
}

// FromContext returns the caller of the RPC ctx belongs to.
func FromContext(ctx context.Context) Peer {
	var out Peer
	p, ok := peer.FromContext(ctx)
	if !ok {
		return out
	}
	if p.Addr != nil {
		out.Addr = p.Addr.String()
		if i := strings.LastIndexByte(out.Addr, ':'); i > 0 {
			out.Addr = strings.Trim(out.Addr[:i], "[]")
		}
	}
	if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 && len(ti.State.PeerCertificates) > 0 {
		out.TLS = true
		out.Identity, out.HasID = FromCert(ti.State.PeerCertificates[0])
	}
	return out
}

// Presented reports whether the incoming metadata of ctx carries token
// under key. An empty token is never presented: a service without one
// accepts nobody by it.
func Presented(ctx context.Context, key, token string) bool {
	if token == "" {
		return false
	}
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get(key) {
		if subtle.ConstantTimeCompare([]byte(v), []byte(token)) == 1 {
			return true
		}
	}
	return false
}

// Equal compares two secrets in constant time; empty never matches.
func Equal(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// WithTokens returns a dial option that sends each non-empty token under
// its key with every call. kv alternates keys and tokens.
func WithTokens(kv ...string) grpc.DialOption {
	md := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			md[kv[i]] = kv[i+1]
		}
	}
	if len(md) == 0 {
		return grpc.EmptyDialOption{}
	}
	return grpc.WithPerRPCCredentials(tokens(md))
}

type tokens map[string]string

func (t tokens) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return t, nil
}

// RequireTransportSecurity is false: without mutual TLS the tokens
// travel in clear, which docs/security.md states (a token guards against
// processes that can reach a port, not against one reading the wire).
func (tokens) RequireTransportSecurity() bool { return false }

// LoadToken returns a token: the first line of file when file is set,
// else the environment variable env (getenv may be nil: os.Getenv). An
// empty result means no token.
func LoadToken(file, env string, getenv func(string) string) (string, error) {
	if file == "" {
		if getenv == nil {
			getenv = os.Getenv
		}
		return strings.TrimSpace(getenv(env)), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	if line = strings.TrimSpace(line); line == "" {
		return "", fmt.Errorf("token file %s is empty", file)
	}
	return line, nil
}

// ErrShortSecret reports a registration secret too short to be
// unguessable.
var ErrShortSecret = errors.New("secret shorter than 32 bytes")

// MinSecretLen is the shortest registration secret accepted.
const MinSecretLen = 32

// NewSecret returns an unguessable secret: 32 random bytes, in hex.
func NewSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}
