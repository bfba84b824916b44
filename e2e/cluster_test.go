package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// daemon is one CDN process whose command line is kept, so a test can
// kill it and start it again as it was (same addresses, same disk).
type daemon struct {
	t    *testing.T
	name string
	bin  string
	args []string
	ops  string
	p    *proc
	// netns, when set, is the network namespace the process runs in;
	// http then reaches its ops listener from there.
	netns string
	http  *http.Client
}

func (s *daemon) start() {
	s.t.Helper()
	if s.netns == "" {
		s.p = start(s.t, s.name, s.bin, s.args...)
		return
	}
	// ip netns exec replaces itself with the binary: the pid is the node's.
	s.p = startExe(s.t, s.name, "ip", append([]string{"netns", "exec", s.netns, filepath.Join(binDir, s.bin)}, s.args...)...)
}

// restart starts the process again after it died or was killed, and waits
// until it is ready.
func (s *daemon) restart() {
	s.t.Helper()
	s.p.stop(syscall.SIGKILL) // a no-op when it is gone already
	s.start()
	s.waitReady()
}

// waitReady waits for the process's /readyz.
func (s *daemon) waitReady() {
	s.t.Helper()
	if s.http == nil {
		waitReady(s.t, s.ops)
		return
	}
	eventually(s.t, 30*time.Second, "ready "+s.name, func() error {
		resp, err := s.http.Get("http://" + s.ops + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
}

// signal sends sig without waiting (SIGSTOP, SIGCONT).
func (s *daemon) signal(sig syscall.Signal) {
	s.t.Helper()
	if err := s.p.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signal %s: %v", s.name, err)
	}
}

// alive reports whether the process is still running.
func (s *daemon) alive() bool {
	select {
	case <-s.p.done:
		return false
	default:
		return true
	}
}

// metric reads one metric from the process's ops listener.
func (s *daemon) metric(name string, labels map[string]string) float64 {
	s.t.Helper()
	if s.http != nil {
		return metricVia(s.t, s.http, s.ops, name, labels)
	}
	return metric(s.t, s.ops, name, labels)
}

// clusterOpts shapes a cluster; the zero value is one cachenode.
type clusterOpts struct {
	caches     int
	cacheArgs  func(i int) []string // extra flags of cachenode i
	originArgs []string
	// etcd, when set, is an external etcd's client address: the tracker
	// uses it instead of embedding one.
	etcd string
	// tracker and node flags added to every service, e.g. TLS.
	trackerArgs, nodeArgs []string
	// edgeArgs are added to the edge's flags.
	edgeArgs []string
}

// cluster is the four services as separate processes on loopback:
// tracker on 127.0.0.2, origin on .3, cachenodes on .4, .6, .7, ...,
// edge on .5.
type cluster struct {
	t           *testing.T
	media       string
	tracker     *daemon
	trackerAddr string
	origin      *daemon
	caches      []*daemon
	cacheDirs   []string
	edge        *daemon
	edgeURL     string
}

func cacheHost(i int) string {
	if i == 0 {
		return "127.0.0.4"
	}
	return fmt.Sprintf("127.0.0.%d", 5+i)
}

// startCluster starts the services and waits until all are ready. Files
// in media when it is called are published at once.
func startCluster(t *testing.T, media string, o clusterOpts) *cluster {
	t.Helper()
	if o.caches == 0 {
		o.caches = 1
	}
	c := &cluster{t: t, media: media}
	c.trackerAddr = freeAddr(t, "127.0.0.2")
	targs := []string{"--listen", c.trackerAddr}
	if o.etcd != "" {
		targs = append(targs, "--etcd-endpoints", o.etcd)
	} else {
		targs = append(targs, "--embedded-etcd", t.TempDir(), "--etcd-client-addr", freeAddr(t, "127.0.0.2"),
			"--etcd-peer-addr", freeAddr(t, "127.0.0.2"))
	}
	c.tracker = c.service("tracker", "tracker", "127.0.0.2", append(targs, o.trackerArgs...))
	waitReady(t, c.tracker.ops)

	oargs := append([]string{"--listen", freeAddr(t, "127.0.0.3"), "--tracker", c.trackerAddr, "--media-dir", media}, o.originArgs...)
	c.origin = c.service("origin", "origin", "127.0.0.3", append(oargs, o.nodeArgs...))
	for i := range o.caches {
		dir := t.TempDir()
		args := []string{"--listen", freeAddr(t, cacheHost(i)), "--tracker", c.trackerAddr, "--cache-dir", dir}
		if o.cacheArgs != nil {
			args = append(args, o.cacheArgs(i)...)
		}
		c.caches = append(c.caches, c.service(fmt.Sprintf("cachenode%d", i), "cachenode", cacheHost(i), append(args, o.nodeArgs...)))
		c.cacheDirs = append(c.cacheDirs, dir)
	}
	edgeAddr := freeAddr(t, "127.0.0.5")
	c.edge = c.service("edge", "edge", "127.0.0.5", append(append([]string{"--listen", edgeAddr, "--tracker", c.trackerAddr}, o.edgeArgs...), o.nodeArgs...))
	c.edgeURL = "http://" + edgeAddr
	for _, s := range append([]*daemon{c.origin, c.edge}, c.caches...) {
		waitReady(t, s.ops)
	}
	return c
}

// service starts bin with args plus an ops listener on host.
func (c *cluster) service(name, bin, host string, args []string) *daemon {
	c.t.Helper()
	ops := freeAddr(c.t, host)
	s := &daemon{t: c.t, name: name, bin: bin, args: append(args, "--ops", ops), ops: ops}
	s.start()
	return s
}

func (c *cluster) url(name string) string { return c.edgeURL + "/" + name }

// waitServed waits until the edge answers HEAD for name with 200 and
// returns its ETag.
func (c *cluster) waitServed(name string) string {
	c.t.Helper()
	var etag string
	eventually(c.t, 30*time.Second, "edge serves "+name, func() error {
		resp, err := http.Head(c.url(name))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("HEAD status %d", resp.StatusCode)
		}
		etag = resp.Header.Get("ETag")
		return nil
	})
	return etag
}

// mustGet fetches the whole of name through the edge and fails the test
// unless it is 200 and byte-exact.
func (c *cluster) mustGet(name string, want []byte) {
	c.t.Helper()
	code, body, err := getAll(c.url(name), nil)
	if err != nil || code != 200 || sum(body) != sum(want) {
		c.t.Fatalf("GET %s: status %d, %d bytes, byte-exact %v, err %v", name, code, len(body), sum(body) == sum(want), err)
	}
}

// mustGetSoon is mustGet for right after a node came back: a node's
// clients retry its address with a backoff (at most 3 s), so the first
// requests may fail with a 5xx or be cut short. It waits for a whole
// byte-exact answer and fails the test if any answer carries a wrong
// byte.
func (c *cluster) mustGetSoon(name string, want []byte) {
	c.t.Helper()
	eventually(c.t, 30*time.Second, "GET "+name, func() error {
		code, body, err := getAll(c.url(name), nil)
		if code == 200 && !bytes.Equal(body, want[:min(len(body), len(want))]) {
			c.t.Fatalf("GET %s: %d bytes that are not the file's", name, len(body))
		}
		if err != nil || code != 200 || len(body) != len(want) {
			return fmt.Errorf("status %d, %d bytes, %v", code, len(body), err)
		}
		return nil
	})
}

// boundedClient bounds every request of the fault tests: a hang fails the test
// instead of stalling it until the binary's timeout.
var boundedClient = &http.Client{Timeout: 2 * time.Minute}

// getAll GETs url with headers and returns the status and the body read
// until the end or the first error.
func getAll(url string, hdr map[string]string) (int, []byte, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return 0, nil, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := boundedClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// download is a viewer reading a response body piece by piece, so the test
// can act mid-stream and measure the longest wait for data.
type download struct {
	resp      *http.Response
	got       []byte
	start     time.Time     // when the request was sent
	firstByte time.Duration // from start to the body's first byte
	longest   time.Duration // longest wait for one read since measure
	measure   bool
	last      time.Time
}

func startDownload(t *testing.T, url string, hdr map[string]string) *download {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := boundedClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return &download{resp: resp, start: start}
}

// read reads until n bytes in all were received (n < 0: to the end) and
// returns the error that ended the body early, if any.
func (d *download) read(n int) error {
	buf := make([]byte, 64<<10)
	for n < 0 || len(d.got) < n {
		want := len(buf)
		if n >= 0 {
			want = min(want, n-len(d.got))
		}
		k, err := d.resp.Body.Read(buf[:want])
		now := time.Now()
		if k > 0 && len(d.got) == 0 {
			d.firstByte = now.Sub(d.start)
		}
		if d.measure && k > 0 {
			d.longest = max(d.longest, now.Sub(d.last))
			d.last = now
		}
		d.got = append(d.got, buf[:k]...)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// startMeasuring starts timing the waits between reads.
func (d *download) startMeasuring() { d.measure, d.last = true, time.Now() }

// holdings is how many chunk files of any file a cachenode's directory
// holds (complete ones, under their final names).
func holdings(dir string) int {
	n := 0
	roots, _ := os.ReadDir(dir + "/chunks")
	for _, r := range roots {
		files, _ := os.ReadDir(dir + "/chunks/" + r.Name())
		for _, f := range files {
			if !strings.HasSuffix(f.Name(), ".tmp") {
				n++
			}
		}
	}
	return n
}
