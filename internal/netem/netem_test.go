package netem

import (
	"io"
	"net"
	"testing"
)

// serveOnce accepts one connection on a link and writes data to it.
func serveOnce(t *testing.T, link *Link, data []byte) net.Conn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	l := Listen(ln, link)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
		c.Write(data) // blocks past a stall until the cleanup closes c
		c.Close()
	}()
	t.Cleanup(func() {
		if c, ok := <-accepted; ok {
			c.Close()
		}
	})
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestLinkCountsWhatItSends(t *testing.T) {
	link := &Link{Rate: 10 << 20}
	data := make([]byte, 100<<10)
	c := serveOnce(t, link, data)
	got, err := io.ReadAll(c)
	if err != nil || len(got) != len(data) {
		t.Fatalf("read %d bytes: %v", len(got), err)
	}
	if link.Sent() != int64(len(data)) {
		t.Fatalf("Sent = %d, want %d", link.Sent(), len(data))
	}
}

func TestLinkStallsAfterBudget(t *testing.T) {
	link := &Link{StallAfter: 40 << 10}
	c := serveOnce(t, link, make([]byte, 100<<10))
	buf := make([]byte, 40<<10)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("the bytes before the stall: %v", err)
	}
	if link.Sent() != 40<<10 {
		t.Fatalf("Sent = %d, want the budget", link.Sent())
	}
	// Nothing more comes; the cleanup's Close releases the blocked Write.
}
