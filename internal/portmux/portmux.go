// Package portmux serves gRPC and plain HTTP on one port, as p2pd nodes do
// (viewers' HTTP and the nodes' SPP and tracker gRPC share -P). A
// connection that opens with the HTTP/2 client preface is gRPC, and so is
// one that opens with a TLS handshake (nodes under mutual TLS; viewers'
// HTTP is cleartext); anything else is HTTP/1.x from a viewer. Browsers
// never speak cleartext HTTP/2, so the split is exact for them.
package portmux

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// preface starts every HTTP/2 connection; "PRI" is never an HTTP/1 method.
var preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// SniffTimeout bounds how long a new connection may take to send its first
// bytes before it is dropped.
const SniffTimeout = 10 * time.Second

// Mux splits one listener into a gRPC and an HTTP listener.
type Mux struct {
	l          net.Listener
	grpc, http *sub
	closeOnce  sync.Once
	done       chan struct{}
}

// New starts splitting l. Close the Mux (not the sub-listeners) to stop.
func New(l net.Listener) *Mux {
	m := &Mux{l: l, done: make(chan struct{})}
	m.grpc = &sub{m: m, conns: make(chan net.Conn)}
	m.http = &sub{m: m, conns: make(chan net.Conn)}
	go m.serve()
	return m
}

// GRPC returns the listener of HTTP/2 (gRPC) connections.
func (m *Mux) GRPC() net.Listener { return m.grpc }

// HTTP returns the listener of all other connections.
func (m *Mux) HTTP() net.Listener { return m.http }

// Close stops accepting and closes the underlying listener.
func (m *Mux) Close() error {
	var err error
	m.closeOnce.Do(func() { close(m.done); err = m.l.Close() })
	return err
}

func (m *Mux) serve() {
	for {
		c, err := m.l.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			m.Close()
			return
		}
		// Sniff in the connection's own goroutine so a slow client never
		// holds up the others.
		go m.route(c)
	}
}

func (m *Mux) route(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(SniffTimeout))
	buf := make([]byte, len(preface))
	n, err := io.ReadAtLeast(c, buf, 3)
	c.SetReadDeadline(time.Time{})
	if err != nil && n == 0 {
		c.Close()
		return
	}
	pc := &prefixConn{Conn: c, prefix: buf[:n]}
	dst := m.http
	if n >= 3 && (bytes.Equal(buf[:3], preface[:3]) || isTLSHandshake(buf[:3])) {
		dst = m.grpc
	}
	select {
	case dst.conns <- pc:
	case <-m.done:
		c.Close()
	}
}

// isTLSHandshake reports whether b starts a TLS handshake record (type 22,
// version 3.x): never the start of an HTTP/1 request line.
func isTLSHandshake(b []byte) bool {
	return b[0] == 0x16 && b[1] == 0x03 && b[2] <= 0x04
}

// prefixConn replays the sniffed bytes before reading on.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// sub is one side of the split.
type sub struct {
	m     *Mux
	conns chan net.Conn
}

func (s *sub) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.m.done:
		return nil, net.ErrClosed
	}
}

// Close closes the whole Mux: both sides share one port.
func (s *sub) Close() error   { return s.m.Close() }
func (s *sub) Addr() net.Addr { return s.m.l.Addr() }
