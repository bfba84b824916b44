// Package netem emulates network links for tests and benchmarks: a
// net.Listener wrapper whose connections send at a limited rate, can stall
// after a number of bytes, and count what they sent. It is the boundary
// fake for link speeds, so tests of source selection and failover run on
// loopback without root or tc.
package netem

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Link shapes what the server side of every connection accepted through
// it sends; the rate is shared by all of them, as one uplink is. Its zero
// value is an unlimited link.
type Link struct {
	// Rate is the most bytes per second the link sends; 0 is unlimited.
	Rate float64
	// StallAfter, when positive, makes the link send this many bytes and
	// then nothing, ever, as a peer whose process hangs mid-transfer: its
	// connections stay open and every further write blocks until the
	// connection is closed.
	StallAfter int64

	sent atomic.Int64

	mu   sync.Mutex
	next time.Time // when the link is free to send again
}

// Sent returns the bytes sent through the link so far.
func (l *Link) Sent() int64 { return l.sent.Load() }

// burst is the most sent at once: small enough that a slow link is slow
// from the first bytes, large enough that a fast one is not slowed by the
// pacing itself.
const burst = 16 << 10

// take reserves n bytes of the link's rate and sleeps until they may go.
func (l *Link) take(n int) {
	if l.Rate <= 0 {
		return
	}
	l.mu.Lock()
	now := time.Now()
	if l.next.Before(now) {
		l.next = now
	}
	at := l.next
	l.next = l.next.Add(time.Duration(float64(n) / l.Rate * float64(time.Second)))
	l.mu.Unlock()
	time.Sleep(time.Until(at))
}

// allow returns how many of n bytes may still be sent before the stall.
func (l *Link) allow(n int) int {
	if l.StallAfter <= 0 {
		return n
	}
	for {
		sent := l.sent.Load()
		left := l.StallAfter - sent
		if left <= 0 {
			return 0
		}
		k := int(min(int64(n), left))
		if l.sent.CompareAndSwap(sent, sent+int64(k)) {
			return k
		}
	}
}

// Listen wraps ln: connections it accepts send through link.
func Listen(ln net.Listener, link *Link) net.Listener {
	return &listener{Listener: ln, link: link}
}

type listener struct {
	net.Listener
	link *Link
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c, link: l.link, closed: make(chan struct{})}, nil
}

type conn struct {
	net.Conn
	link      *Link
	closeOnce sync.Once
	closed    chan struct{}
}

func (c *conn) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), burst)
		if c.link.StallAfter > 0 {
			n = c.link.allow(n)
			if n == 0 {
				<-c.closed // stalled for good
				return written, net.ErrClosed
			}
		}
		c.link.take(n)
		k, err := c.Conn.Write(p[:n])
		written += k
		if c.link.StallAfter <= 0 {
			c.link.sent.Add(int64(k))
		}
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

func (c *conn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}
