package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// Eight caches, four viewers each, all starting the same cold file at
// once: the caches fetch each chunk through its home cache, so the origin
// sends the file about once instead of eight times.
func TestSwarmEightCachesOneOriginCopy(t *testing.T) {
	media := t.TempDir()
	const size = 24<<20 + 12345
	data := randomFile(t, media, "release.mp4", size)
	const caches, viewers = 8, 4
	hosts := []string{"127.0.0.40"}
	for i := range caches {
		hosts = append(hosts, fmt.Sprintf("127.0.0.%d", 41+i))
	}
	port := samePort(t, hosts...)
	server := startP2PD(t, "server", hosts[0], port, "-i", "-p", media)
	serverAddr := net.JoinHostPort(hosts[0], port)
	var nodes []*p2pdNode
	for i := range caches {
		nodes = append(nodes, startP2PD(t, fmt.Sprintf("cache%d", i), hosts[1+i], port,
			"-c", t.TempDir(), "-n", "-N", "-S", serverAddr))
	}
	waitP2PDServes(t, server.url("release.mp4"), "")
	for _, n := range nodes {
		waitP2PDServes(t, n.url("release.mp4"), "")
	}
	// Every cache must be in the tracker's view before the rush, or the
	// ones missing would not be anyone's home.
	eventually(t, 30*time.Second, "tracker sees every cache", func() error {
		if n := metric(t, server.ops(), "p2pd_tracker_nodes", nil); n != caches+1 {
			return fmt.Errorf("%v nodes", n)
		}
		return nil
	})
	before := metric(t, server.ops(), "p2pd_origin_egress_bytes_total", nil)

	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, caches*viewers)
	for _, n := range nodes {
		for v := range viewers {
			wg.Go(func() {
				<-start
				resp, err := http.Get(n.url("release.mp4"))
				if err != nil {
					errs <- err
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case err != nil:
					errs <- fmt.Errorf("%s viewer %d: %w", n.name, v, err)
				case resp.StatusCode != 200 || sum(body) != sum(data):
					errs <- fmt.Errorf("%s viewer %d: status %d, %d bytes, sha256 match %v", n.name, v, resp.StatusCode, len(body), sum(body) == sum(data))
				}
			})
		}
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	egress := metric(t, server.ops(), "p2pd_origin_egress_bytes_total", nil) - before
	var peer, origin float64
	for _, n := range nodes {
		peer += metric(t, n.ops(), "p2pd_cachenode_fetched_bytes_total", map[string]string{"source": "peer"})
		origin += metric(t, n.ops(), "p2pd_cachenode_fetched_bytes_total", map[string]string{"source": "origin"})
	}
	t.Logf("%d caches x %d viewers of a %d-byte file: origin egress %.0f bytes (%.2fx), caches fetched %.0f from peers and %.0f from the origin",
		caches, viewers, size, egress, egress/size, peer, origin)
	if egress > 1.1*size {
		t.Fatalf("origin egress %.0f bytes = %.2fx the file; want <= 1.1x", egress, egress/size)
	}
}
