package connlimit

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// dialFrom connects to addr from the loopback address from.
func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func listen(t *testing.T, cfg Config) (*Listener, chan net.Conn) {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := Wrap(raw, cfg)
	t.Cleanup(func() { l.Close() })
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	return l, accepted
}

// refused reports whether c was answered 503 with Retry-After.
func refused(t *testing.T, c net.Conn) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return false
	}
	return resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != ""
}

func TestLimits(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   Config
		first []string // sources that fill the limits
		next  string   // one more source
		admit bool
	}{
		{"per client", Config{PerClient: 2}, []string{"127.0.0.1", "127.0.0.1"}, "127.0.0.1", false},
		{"per client, another client", Config{PerClient: 2}, []string{"127.0.0.1", "127.0.0.1"}, "127.0.0.2", true},
		{"total", Config{Total: 2}, []string{"127.0.0.1", "127.0.0.2"}, "127.0.0.3", false},
		{"no limits", Config{}, []string{"127.0.0.1", "127.0.0.1"}, "127.0.0.1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, accepted := listen(t, tc.cfg)
			var held []net.Conn
			for _, from := range tc.first {
				dialFrom(t, from, l.Addr().String())
				held = append(held, <-accepted)
			}
			c := dialFrom(t, tc.next, l.Addr().String())
			if tc.admit {
				<-accepted
				return
			}
			if !refused(t, c) {
				t.Fatal("a connection over the limit was not answered 503 with Retry-After")
			}
			// A closed connection makes room again.
			held[0].Close()
			dialFrom(t, tc.next, l.Addr().String())
			<-accepted
			if got := l.Open(); got != len(tc.first) {
				t.Errorf("%d connections counted open, want %d", got, len(tc.first))
			}
		})
	}
}

// A viewer that stops reading is cut once a write makes no progress for
// SendTimeout, whatever the size of the response.
func TestSendTimeout(t *testing.T) {
	l, accepted := listen(t, Config{SendTimeout: 200 * time.Millisecond})
	dialFrom(t, "127.0.0.1", l.Addr().String()) // never reads
	c := <-accepted
	_, err := c.Write(make([]byte, 256<<20))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write to a viewer that does not read: %v, want a deadline error", err)
	}
}
