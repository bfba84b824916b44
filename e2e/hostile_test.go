package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Hostile viewers at the process level: connections that never send a
// request, clients that send their headers a byte at a time, and requests
// for every chunk of a 100 GB file. Input validation itself is fuzzed in
// the packages (make fuzz).

// TestHostileIdleAndSlowlorisConnections: 10,000 connections that send
// nothing and 100 slowloris clients (a header byte a second) do not keep
// other viewers from being served; the edge drops both kinds after its
// ReadHeaderTimeout (10 s).
func TestHostileIdleAndSlowlorisConnections(t *testing.T) {
	const idle, slow = 10000, 100
	raiseNoFile(t, idle+slow+2000) // before the edge starts: it inherits the limit
	media := t.TempDir()
	data := randomFile(t, media, "films/a.mp4", 8<<20)
	c := startCluster(t, media, clusterOpts{})
	c.waitServed("films/a.mp4")
	c.mustGet("films/a.mp4", data)
	addr := strings.TrimPrefix(c.edgeURL, "http://")
	rssBefore := c.edge.metric("process_resident_memory_bytes", nil)

	conns := dialMany(t, addr, idle)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var dropped atomic.Int32
	t.Cleanup(func() { close(stop); wg.Wait() })
	for range slow {
		wg.Go(func() {
			if slowloris(addr, stop) {
				dropped.Add(1)
			}
		})
	}
	// Viewers meanwhile: every one served, byte-exact.
	var worst time.Duration
	for range 10 {
		start := time.Now()
		c.mustGet("films/a.mp4", data)
		worst = max(worst, time.Since(start))
	}
	rss := c.edge.metric("process_resident_memory_bytes", nil)
	t.Logf("%d idle and %d slowloris connections open: 10 viewers served byte-exact, slowest in %v; edge RSS %.0f MiB (%.0f MiB before)",
		len(conns), slow, worst.Round(time.Millisecond), rss/(1<<20), rssBefore/(1<<20))

	eventually(t, 30*time.Second, "slowloris clients dropped", func() error {
		if n := dropped.Load(); n != slow {
			return fmt.Errorf("%d of %d dropped", n, slow)
		}
		return nil
	})
	open := closedByPeer(conns, 15*time.Second)
	if open > 0 {
		t.Errorf("%d of %d idle connections still open after the header timeout", open, len(conns))
	}
	c.mustGet("films/a.mp4", data)
}

// TestHostileHugeSparseFile: a 100 GB file (sparse, made by truncate)
// published by a p2pd server. A Range request naming every chunk is
// refused by the header limit; one naming thousands is ignored (32 ranges
// at most) and streams; 32 ranges of the whole file and bytes=0- stream
// chunk by chunk. The process's memory stays bounded while hundreds of
// megabytes go through.
func TestHostileHugeSparseFile(t *testing.T) {
	const size = 100 << 30
	const chunk = 1 << 20
	media := t.TempDir()
	path := filepath.Join(media, "huge.mp4")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Skipf("no sparse files here: %v", err)
	}
	port := samePort(t, "127.0.0.40")
	srv := startP2PD(t, "server", "127.0.0.40", port, "-p", media, "-N")
	url := srv.url("huge.mp4")
	waitP2PDServes(t, url, "")
	base := rss(t, srv.cmd.Process.Pid)
	peak := base

	every := make([]string, 0, size/chunk)
	for i := int64(0); i < size/chunk; i++ {
		every = append(every, fmt.Sprintf("%d-%d", i*chunk, i*chunk))
	}
	code, _, _ := getAll(url, map[string]string{"Range": "bytes=" + strings.Join(every, ",")})
	if code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("every chunk in one Range (%d ranges): status %d, want 431", len(every), code)
	}
	t.Logf("every chunk in one Range: %d", code)

	for _, tc := range []struct {
		name, rng string
		status    int
		read      int64
	}{
		{"3000 ranges: ignored, the whole file streams", "bytes=" + strings.Join(every[:3000], ","), 200, 128 << 20},
		{"32 ranges covering the file", thirtyTwo(size), 206, 128 << 20},
		{"32 ranges of the whole file each (ServeContent ignores ranges summing past the size)", "bytes=" + strings.Repeat(fmt.Sprintf("0-%d,", size-1), 31) + fmt.Sprintf("0-%d", size-1), 200, 128 << 20},
		{"bytes=0-", "bytes=0-", 206, 1 << 30},
	} {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Range", tc.rng)
		resp, err := boundedClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if resp.StatusCode != tc.status {
			resp.Body.Close()
			t.Fatalf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
		buf := make([]byte, 1<<20)
		var got int64
		for got < tc.read {
			n, err := io.ReadFull(resp.Body, buf)
			got += int64(n)
			if err != nil {
				t.Fatalf("%s: after %d bytes: %v", tc.name, got, err)
			}
			if tc.status == 200 && bytes.Count(buf[:n], []byte{0}) != n {
				t.Fatalf("%s: a byte of the file is not zero", tc.name)
			}
			if got%(32<<20) == 0 {
				peak = max(peak, rss(t, srv.cmd.Process.Pid))
			}
		}
		resp.Body.Close() // the viewer leaves mid-file
		t.Logf("%s: read %d MiB, peak RSS %d MiB (%d MiB before)", tc.name, got>>20, peak>>20, base>>20)
	}
	// The edge keeps up to 256 MiB of verified chunks in memory (its hot
	// cache, full after this much streaming) and Go's collector lets the
	// heap reach about twice what is live: bounded, and well under the
	// gigabyte read in one go.
	if grew := peak - base; grew > 768<<20 {
		t.Errorf("RSS grew by %d MiB while streaming (from %d MiB): memory is not bounded", grew>>20, base>>20)
	}
	if _, body, _ := getAll(srv.url("huge.mp4"), map[string]string{"Range": fmt.Sprintf("bytes=%d-", size-10)}); !slices.Equal(body, make([]byte, 10)) {
		t.Errorf("last 10 bytes: %v", body)
	}
}

// thirtyTwo is a Range header of 32 ranges that split a file of size in
// equal parts.
func thirtyTwo(size int64) string {
	var rs []string
	for i := range int64(32) {
		rs = append(rs, fmt.Sprintf("%d-%d", i*size/32, (i+1)*size/32-1))
	}
	return "bytes=" + strings.Join(rs, ",")
}

// raiseNoFile raises this process's open file limit (children inherit it)
// to at least n, or skips the test.
func raiseNoFile(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("getrlimit: %v", err)
	}
	if lim.Cur >= n {
		return
	}
	old := lim
	lim.Cur = max(lim.Cur, min(n, lim.Max))
	if lim.Max < n {
		lim.Max, lim.Cur = n, n // root may raise the hard limit
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("cannot raise the open file limit to %d (%d/%d): %v", n, old.Cur, old.Max, err)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
}

// dialMany opens n TCP connections to addr that send nothing; they are
// closed when the test ends.
func dialMany(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for w := range 32 {
		wg.Go(func() {
			for i := w; i < n; i += 32 {
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err != nil {
					mu.Lock()
					firstErr = cmp(firstErr, err)
					mu.Unlock()
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	if firstErr != nil {
		t.Fatalf("dial %d connections: %v", n, firstErr)
	}
	return conns
}

func cmp(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// slowloris sends a request line, then one header byte a second, until
// the server drops the connection (true) or stop is closed (false).
func slowloris(addr string, stop chan struct{}) bool {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /films/a.mp4 HTTP/1.1\r\nHost: cdn\r\nX-Slow: "); err != nil {
		return true
	}
	r := bufio.NewReader(c)
	for {
		select {
		case <-stop:
			return false
		default:
		}
		if _, err := c.Write([]byte("a")); err != nil {
			return true
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := r.ReadByte(); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue // still open: one more byte
			}
			return true // EOF or reset: dropped
		}
		// The server answered (408 or 400) before closing: dropped too.
		return true
	}
}

// closedByPeer waits up to d for the server to close each connection and
// returns how many are still open.
func closedByPeer(conns []net.Conn, d time.Duration) int {
	deadline := time.Now().Add(d)
	var open atomic.Int32
	var wg sync.WaitGroup
	for w := range 64 {
		wg.Go(func() {
			buf := make([]byte, 1)
			for i := w; i < len(conns); i += 64 {
				conns[i].SetReadDeadline(deadline)
				_, err := conns[i].Read(buf)
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					open.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return int(open.Load())
}

// rss returns the resident memory of process pid in bytes.
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS for %d", pid)
	return 0
}
