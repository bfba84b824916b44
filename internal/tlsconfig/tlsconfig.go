// Package tlsconfig is the optional mutual TLS between p2pd nodes. With it
// on, every gRPC server (tracker, SPP, the single binary's shared port)
// demands a client certificate signed by the cluster's CA and every gRPC
// client presents its own and verifies the server's: a node without a
// valid certificate can neither fetch chunks nor register. Viewers' HTTP
// and the ops listener are not affected.
//
// A node's certificate names it as dialed: the IP addresses or DNS names
// other nodes use for it (--advertise, the tracker address) must be among
// its subject alternative names, and it is used both to serve and to
// dial, so it needs both the server and the client extended key usage
// (or none). The key pair is read again when its files change, so
// certificates rotate without a restart; a new CA needs one.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Flags are the command-line settings of mutual TLS.
type Flags struct {
	Cert, Key, CA string
}

// Register adds --tls-cert, --tls-key and --tls-ca to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.Cert, "tls-cert", "", "this node's certificate (PEM) for mutual TLS between nodes; with --tls-key and --tls-ca")
	fs.StringVar(&f.Key, "tls-key", "", "the private key (PEM) of --tls-cert")
	fs.StringVar(&f.CA, "tls-ca", "", "the CA certificate(s) (PEM) that sign every node's certificate")
}

// Load returns the credentials the flags describe: nil, meaning plaintext,
// when none is set. Giving only some of the three is an error, so a typo
// never silently turns TLS off.
func (f Flags) Load() (*Creds, error) {
	switch n := count(f.Cert, f.Key, f.CA); n {
	case 0:
		return nil, nil
	case 3:
	default:
		return nil, errors.New("mutual TLS needs all of --tls-cert, --tls-key and --tls-ca")
	}
	return New(f.Cert, f.Key, f.CA)
}

func count(vs ...string) int {
	n := 0
	for _, v := range vs {
		if v != "" {
			n++
		}
	}
	return n
}

// Creds are a node's mutual TLS credentials. A nil *Creds is plaintext.
type Creds struct {
	server, client *tls.Config
}

// New loads the key pair and the CA and returns credentials using them.
func New(certFile, keyFile, caFile string) (*Creds, error) {
	kp := &keyPair{cert: certFile, key: keyFile}
	if _, err := kp.get(); err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("tls: CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls: CA %s: no PEM certificate in it", caFile)
	}
	return &Creds{
		server: &tls.Config{
			MinVersion: tls.VersionTLS13,
			ClientAuth: tls.RequireAndVerifyClientCert,
			ClientCAs:  pool,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				return kp.get()
			},
		},
		client: &tls.Config{
			MinVersion: tls.VersionTLS13,
			RootCAs:    pool,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				return kp.get()
			},
		},
	}, nil
}

// Enabled reports whether c is mutual TLS rather than plaintext.
func (c *Creds) Enabled() bool { return c != nil }

// ServerOption makes a gRPC server demand and verify client certificates.
func (c *Creds) ServerOption() grpc.ServerOption {
	if c == nil {
		return grpc.EmptyServerOption{}
	}
	return grpc.Creds(credentials.NewTLS(c.server.Clone()))
}

// DialOption makes a gRPC client verify the server and present the
// node's certificate; plaintext for nil credentials.
func (c *Creds) DialOption() grpc.DialOption {
	if c == nil {
		return grpc.WithTransportCredentials(insecure.NewCredentials())
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(c.client.Clone()))
}

// ServerConfig returns a copy of the server side's TLS configuration, for
// listeners that are not gRPC servers.
func (c *Creds) ServerConfig() *tls.Config { return c.server.Clone() }

// ClientConfig returns a copy of the client side's TLS configuration.
func (c *Creds) ClientConfig() *tls.Config { return c.client.Clone() }

// keyPair reads a certificate and key again once their files change,
// checking at most every reloadCheck.
type keyPair struct {
	cert, key string

	mu      sync.Mutex
	cur     *tls.Certificate
	mod     time.Time // newer modification time of the two files
	checked time.Time
}

const reloadCheck = 10 * time.Second

func (k *keyPair) get() (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := time.Now()
	if k.cur != nil && now.Sub(k.checked) < reloadCheck {
		return k.cur, nil
	}
	k.checked = now
	mod, err := newest(k.cert, k.key)
	if err == nil && k.cur != nil && !mod.After(k.mod) {
		return k.cur, nil
	}
	c, lerr := tls.LoadX509KeyPair(k.cert, k.key)
	switch {
	case lerr == nil:
		k.cur, k.mod = &c, mod
	case k.cur == nil:
		return nil, fmt.Errorf("tls: key pair %s, %s: %w", k.cert, k.key, lerr)
	}
	// A rotation caught half-written keeps the pair that worked; the next
	// check tries again.
	return k.cur, nil
}

func newest(files ...string) (time.Time, error) {
	var t time.Time
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			return t, err
		}
		if st.ModTime().After(t) {
			t = st.ModTime()
		}
	}
	return t, nil
}
