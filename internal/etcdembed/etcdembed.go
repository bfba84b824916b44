// Package etcdembed runs a single-member etcd inside the process, for
// single-machine deployments (the p2pd binary, `tracker --embedded-etcd`)
// and for tests that want a real etcd without installing one.
package etcdembed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// defaultStartTimeout bounds the wait for readiness when ctx has no
// deadline: a member that cannot start (a locked data dir, a port in use)
// must fail rather than hang its process.
const defaultStartTimeout = time.Minute

// Etcd is a running embedded etcd member.
type Etcd struct {
	e         *embed.Etcd
	endpoints []string
	level     zap.AtomicLevel
}

// Start starts a single-member etcd keeping its data in dir, serving
// clients on clientAddr and peers on peerAddr (host:port each; port 0 picks
// a free port, see Endpoints for the one chosen). It returns once the
// member is ready to serve, or fails when ctx ends first (or after a minute
// when ctx has no deadline). Restarting on the same dir keeps the data.
func Start(ctx context.Context, dir, clientAddr, peerAddr string) (*Etcd, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultStartTimeout)
		defer cancel()
	}
	curl, err := addrURL(clientAddr)
	if err != nil {
		return nil, fmt.Errorf("etcd client address: %w", err)
	}
	purl, err := addrURL(peerAddr)
	if err != nil {
		return nil, fmt.Errorf("etcd peer address: %w", err)
	}
	cfg := embed.NewConfig()
	cfg.Name = "p2pd"
	cfg.Dir = dir
	cfg.ListenClientUrls = []url.URL{*curl}
	cfg.AdvertiseClientUrls = []url.URL{*curl}
	cfg.ListenPeerUrls = []url.URL{*purl}
	cfg.AdvertisePeerUrls = []url.URL{*purl}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.InitialClusterToken = "p2pd"
	// etcd logs every step of its start at info; ours is one process among
	// many and only its errors matter to an operator.
	level := zap.NewAtomicLevelAt(zapcore.ErrorLevel)
	zcfg := zap.NewProductionConfig()
	zcfg.Level = level
	zcfg.DisableStacktrace = true
	lg, err := zcfg.Build()
	if err != nil {
		return nil, fmt.Errorf("embedded etcd logger: %w", err)
	}
	cfg.Logger = "zap"
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg.With(zap.String("component", "etcd")))
	// Holdings are rewritten every few hundred milliseconds by every node;
	// without compaction the history would grow until etcd's quota stops
	// all writes.
	cfg.AutoCompactionMode = embed.CompactorModePeriodic
	cfg.AutoCompactionRetention = "5m"

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd in %s: %w", dir, err)
	}
	stop := func() {
		level.SetLevel(zapcore.FatalLevel) // see Close
		e.Close()
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		stop()
		return nil, fmt.Errorf("embedded etcd in %s: %w", dir, err)
	case <-ctx.Done():
		stop()
		return nil, fmt.Errorf("embedded etcd in %s not ready: %w", dir, ctx.Err())
	}
	var eps []string
	for _, l := range e.Clients {
		eps = append(eps, dialable(l.Addr(), curl.Hostname()))
	}
	if len(eps) == 0 {
		stop()
		return nil, errors.New("embedded etcd has no client listener")
	}
	return &Etcd{e: e, endpoints: eps, level: level}, nil
}

// addrURL turns host:port into the http URL etcd wants.
func addrURL(addr string) (*url.URL, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", addr, err)
	}
	if host == "" {
		return nil, fmt.Errorf("%q: host required (etcd advertises it)", addr)
	}
	return &url.URL{Scheme: "http", Host: net.JoinHostPort(host, port)}, nil
}

// dialable returns the bound address as clients can dial it: the actual
// port, and a loopback host when bound to the unspecified address.
func dialable(a net.Addr, host string) string {
	_, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// Endpoints returns the client addresses (host:port) to give clientv3.
func (e *Etcd) Endpoints() []string { return append([]string(nil), e.endpoints...) }

// Err reports a fatal error of the running member.
func (e *Etcd) Err() <-chan error { return e.e.Err() }

// Close stops the member and waits for it to finish.
func (e *Etcd) Close() {
	// Stopping makes etcd log each closed listener as an error; they are
	// not.
	e.level.SetLevel(zapcore.FatalLevel)
	e.e.Close()
}
