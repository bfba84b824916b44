// Package connlimit bounds what viewers' connections may hold: how many
// one client address and all clients together may keep open, and how
// long a connection may go without accepting a byte. A client that
// opens thousands of connections and never reads would otherwise pin a
// goroutine, buffers and kernel socket memory per connection until the
// host runs out, and other viewers' downloads with it.
package connlimit

import (
	"flag"
	"net"
	"sync"
	"time"
)

// Config sets the limits; a zero or negative field is no limit.
type Config struct {
	// PerClient bounds the open connections of one client IP address.
	PerClient int
	// Total bounds all open connections.
	Total int
	// SendTimeout closes a connection that accepts no byte of a response
	// for this long (a viewer that stopped reading).
	SendTimeout time.Duration
}

// Register adds the limits' flags to fs with their defaults:
//   - --max-conns 10000: a few hundred MiB of buffers and goroutines at
//     most, which a real edge host holds easily;
//   - --max-conns-per-client 256: a household or a NAT of players, each
//     with a few connections, stays well within it;
//   - --send-timeout 20s: longer than any pause of a player that is
//     still reading (its buffer full), shorter than a socket left to rot.
func (c *Config) Register(fs *flag.FlagSet) {
	fs.IntVar(&c.Total, "max-conns", 10000, "most viewers' connections open at once; more are answered 503 with Retry-After (0: no limit)")
	fs.IntVar(&c.PerClient, "max-conns-per-client", 256, "most connections one client address may keep open; more are answered 503 with Retry-After (0: no limit)")
	fs.DurationVar(&c.SendTimeout, "send-timeout", 20*time.Second, "close a viewer's connection that accepts no byte of a response for this long (0: never)")
}

// refusal is what a connection over a limit gets before it is closed: an
// HTTP 503 with Retry-After, so a player backs off and tries again rather
// than failing for good. It is written without reading the request.
const refusal = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 58\r\n\r\n503 service unavailable: too many connections, retry soon\n"

// Listener enforces Config on the connections it accepts.
type Listener struct {
	net.Listener
	cfg Config

	mu     sync.Mutex
	total  int
	byAddr map[string]int
}

// Wrap returns l with cfg's limits.
func Wrap(l net.Listener, cfg Config) *Listener {
	return &Listener{Listener: l, cfg: cfg, byAddr: map[string]int{}}
}

// Accept returns the next connection within the limits; connections over
// them are answered 503 and closed here, unseen by the server.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		host := hostOf(c.RemoteAddr())
		if !l.admit(host) {
			go refuse(c)
			continue
		}
		return &conn{Conn: c, l: l, host: host, timeout: l.cfg.SendTimeout}, nil
	}
}

func (l *Listener) admit(host string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cfg.Total > 0 && l.total >= l.cfg.Total {
		return false
	}
	if l.cfg.PerClient > 0 && l.byAddr[host] >= l.cfg.PerClient {
		return false
	}
	l.total++
	l.byAddr[host]++
	return true
}

func (l *Listener) release(host string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.byAddr[host]--; l.byAddr[host] <= 0 {
		delete(l.byAddr, host)
	}
}

// Open returns the number of connections open now.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// refuse answers a connection over the limits and closes it; a client
// that does not even take the answer is cut after a second.
func refuse(c net.Conn) {
	c.SetWriteDeadline(time.Now().Add(time.Second))
	c.Write([]byte(refusal))
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	c.Close()
}

func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}

// sendSlice is the most one write is given before its deadline moves on:
// a slow viewer that keeps reading is never cut, one that stopped is cut
// after SendTimeout whatever the size of the write.
const sendSlice = 64 << 10

// conn counts itself out once closed and bounds how long a write may make
// no progress.
type conn struct {
	net.Conn
	l       *Listener
	host    string
	timeout time.Duration
	once    sync.Once
}

func (c *conn) Write(p []byte) (int, error) {
	if c.timeout <= 0 {
		return c.Conn.Write(p)
	}
	n := 0
	for n < len(p) {
		end := min(len(p), n+sendSlice)
		c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
		w, err := c.Conn.Write(p[n:end])
		n += w
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (c *conn) Close() error {
	c.once.Do(func() { c.l.release(c.host) })
	return c.Conn.Close()
}
