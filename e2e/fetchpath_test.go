package e2e

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"strings"
	"testing"
)

// cdn is the four services started as separate processes, each on its own
// loopback address.
type cdn struct {
	tracker, origin, cache, edge             *proc
	edgeURL                                  string
	trackerOps, originOps, cacheOps, edgeOps string
	media                                    string
}

func startCDN(t *testing.T, media string) *cdn {
	t.Helper()
	c := &cdn{media: media}
	trackerAddr := freeAddr(t, "127.0.0.2")
	c.trackerOps = freeAddr(t, "127.0.0.2")
	c.tracker = start(t, "tracker", "tracker", "--listen", trackerAddr,
		"--embedded-etcd", t.TempDir(), "--etcd-client-addr", freeAddr(t, "127.0.0.2"),
		"--etcd-peer-addr", freeAddr(t, "127.0.0.2"), "--ops", c.trackerOps)
	waitReady(t, c.trackerOps)

	c.originOps = freeAddr(t, "127.0.0.3")
	c.origin = start(t, "origin", "origin", "--listen", freeAddr(t, "127.0.0.3"),
		"--tracker", trackerAddr, "--media-dir", media, "--ops", c.originOps)
	c.cacheOps = freeAddr(t, "127.0.0.4")
	c.cache = start(t, "cachenode", "cachenode", "--listen", freeAddr(t, "127.0.0.4"),
		"--tracker", trackerAddr, "--cache-dir", t.TempDir(), "--ops", c.cacheOps)
	edgeAddr := freeAddr(t, "127.0.0.5")
	c.edgeOps = freeAddr(t, "127.0.0.5")
	c.edge = start(t, "edge", "edge", "--listen", edgeAddr, "--tracker", trackerAddr, "--ops", c.edgeOps)
	c.edgeURL = "http://" + edgeAddr
	for _, ops := range []string{c.originOps, c.cacheOps, c.edgeOps} {
		waitReady(t, ops)
	}
	return c
}

// waitServed waits until the edge serves name (publishing is asynchronous).
func (c *cdn) waitServed(t *testing.T, name string) {
	t.Helper()
	waitP2PDServes(t, c.edgeURL+"/"+name, "")
}

func TestFetchPath(t *testing.T) {
	media := t.TempDir()
	const size = 64 << 20
	big := randomFile(t, media, "films/big.mp4", size)
	randomFile(t, media, "empty.ts", 0)
	one := randomFile(t, media, "one.webm", 1)
	c := startCDN(t, media)
	for _, n := range []string{"films/big.mp4", "empty.ts", "one.webm"} {
		c.waitServed(t, n)
	}
	url := c.edgeURL + "/films/big.mp4"

	resp, body := get(t, "GET", url, nil)
	if resp.StatusCode != 200 || sum(body) != sum(big) {
		t.Fatalf("full GET: status %d, %d bytes, sha256 match %v", resp.StatusCode, len(body), sum(body) == sum(big))
	}
	etag := resp.Header.Get("ETag")
	if etag == "" || resp.Header.Get("Content-Type") != "video/mp4" || resp.Header.Get("Accept-Ranges") != "bytes" || resp.Header.Get("Last-Modified") == "" {
		t.Fatalf("headers: %v", resp.Header)
	}
	egressAfterFirst := metric(t, c.originOps, "p2pd_origin_egress_bytes_total", nil)
	if egressAfterFirst < size {
		t.Fatalf("origin egress %v after a cold full GET of %d bytes", egressAfterFirst, size)
	}

	t.Run("HEAD", func(t *testing.T) {
		resp, body := get(t, "HEAD", url, nil)
		if resp.StatusCode != 200 || len(body) != 0 || resp.ContentLength != size || resp.Header.Get("ETag") != etag {
			t.Fatalf("HEAD: %d, len %d, body %d", resp.StatusCode, resp.ContentLength, len(body))
		}
	})

	t.Run("random ranges", func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		for i := range 50 {
			from := r.IntN(size)
			to := min(size-1, from+r.IntN(3<<20))
			resp, body := get(t, "GET", url, map[string]string{"Range": fmt.Sprintf("bytes=%d-%d", from, to)})
			if resp.StatusCode != 206 || !bytes.Equal(body, big[from:to+1]) {
				t.Fatalf("range %d (%d-%d): status %d, %d bytes, equal %v", i, from, to, resp.StatusCode, len(body), bytes.Equal(body, big[from:to+1]))
			}
			if want := fmt.Sprintf("bytes %d-%d/%d", from, to, size); resp.Header.Get("Content-Range") != want {
				t.Fatalf("Content-Range %q, want %q", resp.Header.Get("Content-Range"), want)
			}
		}
	})

	for _, tc := range []struct {
		name, rng  string
		status     int
		want       []byte
		contentRng string
	}{
		{"suffix", "bytes=-1000", 206, big[size-1000:], fmt.Sprintf("bytes %d-%d/%d", size-1000, size-1, size)},
		{"open", fmt.Sprintf("bytes=%d-", size-5000), 206, big[size-5000:], fmt.Sprintf("bytes %d-%d/%d", size-5000, size-1, size)},
		{"past end", fmt.Sprintf("bytes=%d-", size), 416, nil, fmt.Sprintf("bytes */%d", size)},
		{"malformed", "bytes=abc", 416, nil, fmt.Sprintf("bytes */%d", size)},
		{"unknown unit", "items=0-5", 200, big, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := get(t, "GET", url, map[string]string{"Range": tc.rng})
			if resp.StatusCode != tc.status || resp.Header.Get("Content-Range") != tc.contentRng {
				t.Fatalf("status %d Content-Range %q, want %d %q", resp.StatusCode, resp.Header.Get("Content-Range"), tc.status, tc.contentRng)
			}
			if tc.want != nil && !bytes.Equal(body, tc.want) {
				t.Fatalf("body of %d bytes differs", len(body))
			}
		})
	}

	t.Run("multi-range", func(t *testing.T) {
		resp, body := get(t, "GET", url, map[string]string{"Range": "bytes=0-99,2000000-2000999,-10"})
		mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if resp.StatusCode != 206 || err != nil || mt != "multipart/byteranges" {
			t.Fatalf("status %d type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		wants := [][]byte{big[:100], big[2000000:2001000], big[size-10:]}
		for i, want := range wants {
			part, err := mr.NextPart()
			if err != nil {
				t.Fatalf("part %d: %v", i, err)
			}
			got, _ := io.ReadAll(part)
			if !bytes.Equal(got, want) {
				t.Fatalf("part %d differs", i)
			}
		}
	})

	t.Run("conditional", func(t *testing.T) {
		resp, _ := get(t, "GET", url, map[string]string{"If-None-Match": etag})
		if resp.StatusCode != 304 {
			t.Fatalf("If-None-Match: %d", resp.StatusCode)
		}
		resp, body := get(t, "GET", url, map[string]string{"Range": "bytes=0-9", "If-Range": `"stale"`})
		if resp.StatusCode != 200 || sum(body) != sum(big) {
			t.Fatalf("If-Range stale: %d, %d bytes", resp.StatusCode, len(body))
		}
		resp, body = get(t, "GET", url, map[string]string{"Range": "bytes=0-9", "If-Range": etag})
		if resp.StatusCode != 206 || !bytes.Equal(body, big[:10]) {
			t.Fatalf("If-Range current: %d", resp.StatusCode)
		}
	})

	t.Run("tiny files", func(t *testing.T) {
		resp, body := get(t, "GET", c.edgeURL+"/empty.ts", nil)
		if resp.StatusCode != 200 || len(body) != 0 || resp.Header.Get("Content-Type") != "video/mp2t" {
			t.Fatalf("empty: %d, %d bytes, %q", resp.StatusCode, len(body), resp.Header.Get("Content-Type"))
		}
		resp, body = get(t, "GET", c.edgeURL+"/one.webm", nil)
		if resp.StatusCode != 200 || !bytes.Equal(body, one) {
			t.Fatalf("one byte: %d, %q", resp.StatusCode, body)
		}
		resp, _ = get(t, "GET", c.edgeURL+"/one.webm", map[string]string{"Range": "bytes=1-"})
		if resp.StatusCode != 416 {
			t.Fatalf("one byte, range past end: %d", resp.StatusCode)
		}
	})

	t.Run("not found and traversal", func(t *testing.T) {
		if resp, _ := get(t, "GET", c.edgeURL+"/nope.mp4", nil); resp.StatusCode != 404 {
			t.Fatalf("unknown file: %d", resp.StatusCode)
		}
		addr := strings.TrimPrefix(c.edgeURL, "http://")
		for _, target := range []string{
			"/../films/big.mp4", "/films/../films/big.mp4", "/%2e%2e%2ffilms/big.mp4",
			"/..%2f..%2fetc%2fpasswd", "/films%2f..%2f..%2fbig.mp4", "/films\\..\\big.mp4",
			"/../../../../etc/passwd",
		} {
			code, body := rawGet(t, addr, target)
			if code != 400 && code != 404 {
				t.Errorf("%s: status %d", target, code)
			}
			if bytes.Contains(body, big[:64]) || bytes.Contains(body, []byte("root:")) {
				t.Errorf("%s: returned content", target)
			}
		}
	})

	t.Run("hot GET causes no origin egress", func(t *testing.T) {
		before := metric(t, c.originOps, "p2pd_origin_egress_bytes_total", nil)
		resp, body := get(t, "GET", url, nil)
		if resp.StatusCode != 200 || sum(body) != sum(big) {
			t.Fatalf("second GET: %d", resp.StatusCode)
		}
		if after := metric(t, c.originOps, "p2pd_origin_egress_bytes_total", nil); after != before {
			t.Fatalf("origin egress grew from %v to %v on a hot GET", before, after)
		}
	})
}
