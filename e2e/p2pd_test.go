package e2e

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// samePort returns a port free on every host, as the original p2pd ran
// every node on the same port.
func samePort(t *testing.T, hosts ...string) string {
	t.Helper()
	for range 50 {
		port := strconv.Itoa(20000 + rand.IntN(30000))
		free := true
		for _, h := range hosts {
			// The port and its ops listener's default, port + 1010.
			for _, p := range []string{port, opsPort(port)} {
				l, err := net.Listen("tcp", net.JoinHostPort(h, p))
				if err != nil {
					free = false
					break
				}
				l.Close()
			}
		}
		if free {
			return port
		}
	}
	t.Fatal("no port free on every host")
	return ""
}

// p2pdNode is a running p2pd process.
type p2pdNode struct {
	*proc
	host, port string
}

func (n *p2pdNode) url(name string) string {
	return "http://" + net.JoinHostPort(n.host, n.port) + "/" + name
}
func (n *p2pdNode) ops() string { return net.JoinHostPort(n.host, opsPort(n.port)) }

// opsPort is the default ops port of a p2pd node on port (-P + 1010).
func opsPort(port string) string {
	p, _ := strconv.Atoi(port)
	return strconv.Itoa(p + 1010)
}

func startP2PD(t *testing.T, name, host, port string, args ...string) *p2pdNode {
	t.Helper()
	args = append(args, "-P", port, "-B", host)
	n := &p2pdNode{proc: start(t, name, "p2pd", args...), host: host, port: port}
	waitReady(t, n.ops())
	return n
}

// viewerGet fetches url with an optional Host header.
func viewerGet(t *testing.T, url, host string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	h := map[string]string{}
	for k, v := range hdr {
		h[k] = v
	}
	if host != "" {
		h["Host"] = host
	}
	return get(t, "GET", url, h)
}

func waitP2PDServes(t *testing.T, url, host string) {
	t.Helper()
	eventually(t, 30*time.Second, "serve "+url, func() error {
		req, _ := http.NewRequest("HEAD", url, nil)
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
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

func TestP2PDScenario1SingleServer(t *testing.T) {
	media := t.TempDir()
	big := randomFile(t, media, "big.mp4", 48<<20)
	small := randomFile(t, media, "clips/small.webm", 1000)
	port := samePort(t, "127.0.0.10")
	srv := startP2PD(t, "server", "127.0.0.10", port, "-p", media, "-N")
	waitP2PDServes(t, srv.url("big.mp4"), "")

	resp, body := viewerGet(t, srv.url("big.mp4"), "", nil)
	if resp.StatusCode != 200 || sum(body) != sum(big) {
		t.Fatalf("full GET: %d, sha256 equal %v", resp.StatusCode, sum(body) == sum(big))
	}
	resp, body = viewerGet(t, srv.url("big.mp4"), "", map[string]string{"Range": "bytes=30000000-31000000"})
	if resp.StatusCode != 206 || !bytes.Equal(body, big[30000000:31000001]) {
		t.Fatalf("ranged GET: %d", resp.StatusCode)
	}
	resp, body = viewerGet(t, srv.url("clips/small.webm"), "", nil)
	if resp.StatusCode != 200 || !bytes.Equal(body, small) || resp.Header.Get("Content-Type") != "video/webm" {
		t.Fatalf("small: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

func TestP2PDScenario2IndependentServers(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	data := randomFile(t, a, "film.mkv", 5<<20+17)
	if err := os.WriteFile(filepath.Join(b, "film.mkv"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	port := samePort(t, "127.0.0.20", "127.0.0.21")
	s1 := startP2PD(t, "server1", "127.0.0.20", port, "-p", a, "-N")
	s2 := startP2PD(t, "server2", "127.0.0.21", port, "-p", b, "-N")
	var etags []string
	for _, s := range []*p2pdNode{s1, s2} {
		waitP2PDServes(t, s.url("film.mkv"), "")
		resp, body := viewerGet(t, s.url("film.mkv"), "", nil)
		if resp.StatusCode != 200 || sum(body) != sum(data) {
			t.Fatalf("%s: %d", s.name, resp.StatusCode)
		}
		etags = append(etags, resp.Header.Get("ETag"))
	}
	if etags[0] == "" || etags[0] != etags[1] {
		t.Fatalf("ETags differ across independent servers: %q", etags)
	}
}

func TestP2PDScenario3Coordinated(t *testing.T) {
	media := t.TempDir()
	const size = 48 << 20
	big := randomFile(t, media, "big.mp4", size)
	second := randomFile(t, media, "second.mp4", 8<<20)
	const cdnHost = "cdn.example.com"
	hosts := []string{"127.0.0.10", "127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14", "127.0.0.15"}
	port := samePort(t, hosts...)
	server := startP2PD(t, "server", hosts[0], port, "-i", "-p", media)
	serverAddr := net.JoinHostPort(hosts[0], port)
	cacheArgs := func(dir string) []string {
		return []string{"-c", dir, "-A", cdnHost, "-n", "-N", "-S", serverAddr}
	}
	cacheA := startP2PD(t, "cacheA", hosts[1], port, cacheArgs(t.TempDir())...)
	cacheB := startP2PD(t, "cacheB", hosts[2], port, cacheArgs(t.TempDir())...)
	cacheC := startP2PD(t, "cacheC", hosts[3], port, cacheArgs(t.TempDir())...)
	waitP2PDServes(t, server.url("big.mp4"), "")

	t.Run("through a cache, byte-exact", func(t *testing.T) {
		waitP2PDServes(t, cacheA.url("big.mp4"), cdnHost)
		resp, body := viewerGet(t, cacheA.url("big.mp4"), cdnHost, nil)
		if resp.StatusCode != 200 || sum(body) != sum(big) {
			t.Fatalf("GET via cache A: %d, sha256 equal %v", resp.StatusCode, sum(body) == sum(big))
		}
	})

	t.Run("wrong Host gets 404", func(t *testing.T) {
		for _, h := range []string{"", "evil.example.com", "cdn.example.com.evil"} {
			resp, body := viewerGet(t, cacheA.url("big.mp4"), h, nil)
			if resp.StatusCode != 404 || bytes.Contains(body, big[:32]) {
				t.Fatalf("Host %q: status %d", h, resp.StatusCode)
			}
		}
		resp, _ := viewerGet(t, cacheA.url("big.mp4"), "CDN.example.com:"+port, map[string]string{"Range": "bytes=0-0"})
		if resp.StatusCode != 206 {
			t.Fatalf("Host with other case and port: %d", resp.StatusCode)
		}
	})

	t.Run("cold cache fetches from its peer", func(t *testing.T) {
		resp, body := viewerGet(t, cacheB.url("big.mp4"), cdnHost, nil)
		if resp.StatusCode != 200 || sum(body) != sum(big) {
			t.Fatalf("GET via cache B: %d", resp.StatusCode)
		}
		peer := metric(t, cacheB.ops(), "p2pd_cachenode_fetched_bytes_total", map[string]string{"source": "peer"})
		if peer <= 0 {
			t.Fatalf("cache B fetched %v bytes from peers; want some from cache A", peer)
		}
		t.Logf("cache B: %v bytes from peers, %v from the server", peer,
			metric(t, cacheB.ops(), "p2pd_cachenode_fetched_bytes_total", map[string]string{"source": "origin"}))
	})

	t.Run("a new cache joins with no configuration change", func(t *testing.T) {
		before := metric(t, server.ops(), "p2pd_tracker_nodes", nil)
		cacheD := startP2PD(t, "cacheD", hosts[4], port, cacheArgs(t.TempDir())...)
		eventually(t, 15*time.Second, "tracker sees cache D", func() error {
			if n := metric(t, server.ops(), "p2pd_tracker_nodes", nil); n != before+1 {
				return fmt.Errorf("%v nodes, want %v", n, before+1)
			}
			return nil
		})
		resp, body := viewerGet(t, cacheD.url("second.mp4"), cdnHost, nil)
		if resp.StatusCode != 200 || !bytes.Equal(body, second) {
			t.Fatalf("GET via cache D: %d", resp.StatusCode)
		}
	})

	t.Run("viewer retries through another cache after SIGKILL", func(t *testing.T) {
		req, _ := http.NewRequest("GET", cacheC.url("big.mp4"), nil)
		req.Host = cdnHost
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("start download: %v", err)
		}
		got := make([]byte, 4<<20)
		if _, err := io.ReadFull(resp.Body, got); err != nil {
			t.Fatal(err)
		}
		cacheC.kill()
		rest, _ := io.ReadAll(resp.Body) // ends early: the cache died
		resp.Body.Close()
		got = append(got, rest...)
		if len(got) >= size {
			t.Fatalf("download finished before the kill; test is not testing")
		}
		// The player retries the remainder through another cache.
		resp2, tail := viewerGet(t, cacheA.url("big.mp4"), cdnHost, map[string]string{"Range": fmt.Sprintf("bytes=%d-", len(got))})
		if resp2.StatusCode != 206 {
			t.Fatalf("retry: %d", resp2.StatusCode)
		}
		if all := append(got, tail...); sum(all) != sum(big) {
			t.Fatalf("resumed download is not byte-exact (%d bytes)", len(all))
		}
	})

	t.Run("without -n a cache serves only what it holds", func(t *testing.T) {
		dir := t.TempDir()
		warm := startP2PD(t, "warm", hosts[5], port, cacheArgs(dir)...)
		resp, _ := viewerGet(t, warm.url("second.mp4"), cdnHost, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("warm-up: %d", resp.StatusCode)
		}
		warm.stop(syscall.SIGTERM)
		lazy := startP2PD(t, "lazy", hosts[5], port, "-c", dir, "-A", cdnHost, "-N", "-S", serverAddr)
		resp, body := viewerGet(t, lazy.url("second.mp4"), cdnHost, nil)
		if resp.StatusCode != 200 || !bytes.Equal(body, second) {
			t.Fatalf("held file without -n: %d", resp.StatusCode)
		}
		resp, body = viewerGet(t, lazy.url("big.mp4"), cdnHost, nil)
		if resp.StatusCode != 404 || bytes.Contains(body, big[:32]) {
			t.Fatalf("file not held, without -n: %d, want 404", resp.StatusCode)
		}
		if n := metric(t, lazy.ops(), "p2pd_cachenode_fetched_bytes_total", nil); n != 0 {
			t.Fatalf("cache without -n fetched %v bytes", n)
		}
	})
}
