package edgeserver

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/spp/spptest"
)

// Sizes are chosen around chunk boundaries: 10 chunks and a bit.
const bigSize = 10*testChunk + 1234

func TestServe(t *testing.T) {
	big := newFixtureFile(t, "films/big.mp4", bigSize, 1)
	one := newFixtureFile(t, "one.txt", 1, 2)
	empty := newFixtureFile(t, "empty.webm", 0, 3)
	e := newEnv(t, 2, []*fixtureFile{big, one, empty}, nil)
	etag := big.m.ETag()
	lastMod := modTime.Format(http.TimeFormat)
	size := int64(bigSize)

	type want struct {
		code   int
		body   []byte // nil: not checked
		crange string
		ctype  string
	}
	tests := []struct {
		name   string
		method string
		path   string
		hdr    []string
		want   want
	}{
		{"full GET", "GET", "/films/big.mp4", nil, want{200, big.data, "", "video/mp4"}},
		{"HEAD", "HEAD", "/films/big.mp4", nil, want{200, []byte{}, "", "video/mp4"}},
		{"single range", "GET", "/films/big.mp4", []string{"Range", "bytes=10-99"}, want{206, big.data[10:100], "bytes 10-99/" + fmt.Sprint(size), "video/mp4"}},
		{"range across chunks", "GET", "/films/big.mp4", []string{"Range", fmt.Sprintf("bytes=%d-%d", testChunk-5, 3*testChunk+5)}, want{206, big.data[testChunk-5 : 3*testChunk+6], fmt.Sprintf("bytes %d-%d/%d", testChunk-5, 3*testChunk+5, size), ""}},
		{"suffix range", "GET", "/films/big.mp4", []string{"Range", "bytes=-500"}, want{206, big.data[size-500:], fmt.Sprintf("bytes %d-%d/%d", size-500, size-1, size), ""}},
		{"open-ended range", "GET", "/films/big.mp4", []string{"Range", fmt.Sprintf("bytes=%d-", 7*testChunk+3)}, want{206, big.data[7*testChunk+3:], fmt.Sprintf("bytes %d-%d/%d", 7*testChunk+3, size-1, size), ""}},
		{"range unit case-insensitive", "GET", "/films/big.mp4", []string{"Range", "Bytes=0-4"}, want{206, big.data[:5], "bytes 0-4/" + fmt.Sprint(size), ""}},
		{"HEAD range", "HEAD", "/films/big.mp4", []string{"Range", "bytes=0-9"}, want{206, []byte{}, "bytes 0-9/" + fmt.Sprint(size), ""}},
		{"past end 416", "GET", "/films/big.mp4", []string{"Range", fmt.Sprintf("bytes=%d-", size)}, want{416, nil, fmt.Sprintf("bytes */%d", size), ""}},
		{"malformed 416", "GET", "/films/big.mp4", []string{"Range", "bytes=abc"}, want{416, nil, fmt.Sprintf("bytes */%d", size), ""}},
		{"reversed 416", "GET", "/films/big.mp4", []string{"Range", "bytes=9-2"}, want{416, nil, fmt.Sprintf("bytes */%d", size), ""}},
		{"unknown unit ignored", "GET", "/films/big.mp4", []string{"Range", "items=0-5"}, want{200, big.data, "", ""}},
		{"too many ranges ignored", "GET", "/films/big.mp4", []string{"Range", "bytes=" + strings.Repeat("0-0,", 40) + "1-1"}, want{200, big.data, "", ""}},
		{"If-None-Match", "GET", "/films/big.mp4", []string{"If-None-Match", etag}, want{304, []byte{}, "", ""}},
		{"If-None-Match other", "GET", "/films/big.mp4", []string{"If-None-Match", `"other"`}, want{200, big.data, "", ""}},
		{"If-Range stale", "GET", "/films/big.mp4", []string{"Range", "bytes=0-9", "If-Range", `"stale"`}, want{200, big.data, "", ""}},
		{"If-Range matching", "GET", "/films/big.mp4", []string{"Range", "bytes=0-9", "If-Range", etag}, want{206, big.data[:10], "bytes 0-9/" + fmt.Sprint(size), ""}},
		{"If-Modified-Since", "GET", "/films/big.mp4", []string{"If-Modified-Since", lastMod}, want{304, []byte{}, "", ""}},
		{"If-Modified-Since older", "GET", "/films/big.mp4", []string{"If-Modified-Since", modTime.Add(-time.Hour).Format(http.TimeFormat)}, want{200, big.data, "", ""}},
		{"1-byte file", "GET", "/one.txt", nil, want{200, one.data, "", "text/plain; charset=utf-8"}},
		{"1-byte range", "GET", "/one.txt", []string{"Range", "bytes=0-0"}, want{206, one.data, "bytes 0-0/1", ""}},
		{"1-byte suffix", "GET", "/one.txt", []string{"Range", "bytes=-1"}, want{206, one.data, "bytes 0-0/1", ""}},
		{"1-byte past end", "GET", "/one.txt", []string{"Range", "bytes=1-"}, want{416, nil, "bytes */1", ""}},
		{"empty file", "GET", "/empty.webm", nil, want{200, []byte{}, "", "video/webm"}},
		{"empty file HEAD", "HEAD", "/empty.webm", nil, want{200, []byte{}, "", "video/webm"}},
		{"empty file range", "GET", "/empty.webm", []string{"Range", "bytes=0-0"}, want{200, []byte{}, "", ""}},
		{"empty file suffix 416", "GET", "/empty.webm", []string{"Range", "bytes=-500"}, want{416, nil, "bytes */0", ""}},
		{"empty file suffixes 416", "GET", "/empty.webm", []string{"Range", "bytes=-1,-500"}, want{416, nil, "bytes */0", ""}},
		{"empty file suffix HEAD 416", "HEAD", "/empty.webm", []string{"Range", "bytes=-500"}, want{416, []byte{}, "bytes */0", ""}},
		{"empty file suffix, stale If-Range", "GET", "/empty.webm", []string{"Range", "bytes=-500", "If-Range", `"stale"`}, want{200, []byte{}, "", "video/webm"}},
		{"unknown file", "GET", "/films/none.mp4", nil, want{404, nil, "", ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body, err := e.do(t, tc.method, tc.path, tc.hdr...)
			if err != nil {
				t.Fatalf("read body: %v", err)
			}
			if resp.StatusCode != tc.want.code {
				t.Fatalf("status %d, want %d (body %.100q)", resp.StatusCode, tc.want.code, body)
			}
			if tc.want.body != nil && !bytes.Equal(body, tc.want.body) {
				t.Fatalf("body: %d bytes, want %d; differ", len(body), len(tc.want.body))
			}
			if got := resp.Header.Get("Content-Range"); got != tc.want.crange {
				t.Errorf("Content-Range %q, want %q", got, tc.want.crange)
			}
			if tc.want.ctype != "" {
				if got := resp.Header.Get("Content-Type"); got != tc.want.ctype {
					t.Errorf("Content-Type %q, want %q", got, tc.want.ctype)
				}
			}
			if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options %q, want nosniff", got)
			}
			if tc.want.code == 200 || tc.want.code == 206 {
				file := e.files[strings.TrimPrefix(tc.path, "/")]
				h := resp.Header
				if h.Get("Etag") != file.m.ETag() || h.Get("Last-Modified") != lastMod || h.Get("Accept-Ranges") != "bytes" || h.Get("Cache-Control") == "" {
					t.Errorf("headers ETag %q Last-Modified %q Accept-Ranges %q Cache-Control %q", h.Get("Etag"), h.Get("Last-Modified"), h.Get("Accept-Ranges"), h.Get("Cache-Control"))
				}
				wantLen := int64(len(tc.want.body))
				if tc.method == "HEAD" && tc.want.code == 200 {
					wantLen = file.m.Size
				} else if tc.method == "HEAD" {
					wantLen = 10
				}
				if resp.ContentLength != wantLen {
					t.Errorf("Content-Length %d, want %d", resp.ContentLength, wantLen)
				}
			}
		})
	}
}

func TestMultipartRanges(t *testing.T) {
	big := newFixtureFile(t, "films/big.mp4", bigSize, 1)
	e := newEnv(t, 1, []*fixtureFile{big}, nil)
	size := int64(bigSize)
	ranges := [][2]int64{{0, 9}, {testChunk + 5, testChunk + 20}, {8 * testChunk, 8*testChunk + testChunk + 3}, {size - 3, size - 1}}
	var spec []string
	for _, r := range ranges {
		spec = append(spec, fmt.Sprintf("%d-%d", r[0], r[1]))
	}
	resp, body, err := e.do(t, "GET", "/films/big.mp4", "Range", "bytes="+strings.Join(spec, ","))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 206 {
		t.Fatalf("status %d, want 206", resp.StatusCode)
	}
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/byteranges" {
		t.Fatalf("Content-Type %q: %v", resp.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for i, r := range ranges {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		if got, want := p.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-%d/%d", r[0], r[1], size); got != want {
			t.Errorf("part %d Content-Range %q, want %q", i, got, want)
		}
		if got := p.Header.Get("Content-Type"); got != "video/mp4" {
			t.Errorf("part %d Content-Type %q", i, got)
		}
		data, err := io.ReadAll(p)
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		if !bytes.Equal(data, big.data[r[0]:r[1]+1]) {
			t.Fatalf("part %d: content differs", i)
		}
	}
	if _, err := mr.NextPart(); err != io.EOF {
		t.Fatalf("after the last part: %v, want EOF", err)
	}
}

func TestPathsOutsideThePublishedSet(t *testing.T) {
	secret := newFixtureFile(t, "b", 100, 4)
	nested := newFixtureFile(t, "a/x", 100, 5)
	e := newEnv(t, 1, []*fixtureFile{secret, nested}, nil)
	tests := []struct {
		target string // request target as sent on the wire
		code   int
	}{
		{"/../b", 400},
		{"/%2e%2e%2fb", 400},
		{"/%2E%2E/b", 400},
		{"/a/../b", 400},
		{"/a/%2e%2e/b", 400},
		{"/./b", 400},
		{"/a//x", 400},
		{"/a/x/", 400},
		{"/a\\x", 400},
		{"/a%5cx", 400},
		{"/..%5cb", 400},
		{"/b%00", 400},
		{"//b", 400},
		{"/B", 404},
		{"/a", 404},
	}
	for _, tc := range tests {
		t.Run(tc.target, func(t *testing.T) {
			// Raw bytes on a real connection: no client cleans the path,
			// and net/http's server must not either.
			conn, err := net.Dial("tcp", e.http.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n", tc.target)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.code)
			}
			if bytes.Contains(body, secret.data[:16]) || bytes.Contains(body, nested.data[:16]) {
				t.Fatal("response carries file contents")
			}
		})
	}
}

func TestMethodNotAllowed(t *testing.T) {
	f := newFixtureFile(t, "a.mp4", 10, 6)
	e := newEnv(t, 1, []*fixtureFile{f}, nil)
	for _, m := range []string{"POST", "PUT", "DELETE", "OPTIONS"} {
		resp, _, _ := e.do(t, m, "/a.mp4")
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: status %d Allow %q, want 405 and GET, HEAD", m, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
}

func TestFailover(t *testing.T) {
	tests := []struct {
		name   string
		chunk  int // the fault hits the node ranked first for this chunk
		faults spptest.Faults
		stall  bool
	}{
		{"node dies mid-stream", 0, spptest.Faults{DieAfter: 1}, false},
		{"corrupt chunk", 4, spptest.Faults{Corrupt: map[int]bool{4: true}}, false},
		{"corrupt first chunk", 0, spptest.Faults{Corrupt: map[int]bool{0: true}}, false},
		{"chunk not held", 6, spptest.Faults{Missing: map[int]bool{6: true}}, false},
		{"node stalls", 2, spptest.Faults{Stall: map[int]bool{2: true}}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			big := newFixtureFile(t, "films/big.mp4", bigSize, 1)
			e := newEnv(t, 2, []*fixtureFile{big}, func(c *Config) {
				if tc.stall {
					c.StallTimeout = 200 * time.Millisecond
				}
			})
			bad := e.ranking(t, big)[tc.chunk][0]
			bad.SetFaults(tc.faults)
			resp, body, err := e.do(t, "GET", "/films/big.mp4")
			if err != nil {
				t.Fatalf("body: %v", err)
			}
			if resp.StatusCode != 200 || !bytes.Equal(body, big.data) {
				t.Fatalf("status %d, %d bytes: not the file", resp.StatusCode, len(body))
			}
			if n := counterValue(e.edge.metrics.failovers); n < 1 {
				t.Errorf("failovers %v, want >= 1", n)
			}
		})
	}
}

// When every source fails once (a peer stalls because it was itself
// fetching from a node that died), the edge gives each a second chance
// before it cuts the viewer's response.
func TestSecondRoundAfterEveryNodeFailed(t *testing.T) {
	big := newFixtureFile(t, "films/big.mp4", bigSize, 1)
	e := newEnv(t, 2, []*fixtureFile{big}, func(c *Config) { c.StallTimeout = 200 * time.Millisecond })
	for _, n := range e.nodes {
		n.SetFaults(spptest.Faults{StallOnce: map[int]bool{3: true}})
	}
	resp, body, err := e.do(t, "GET", "/films/big.mp4")
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, big.data) {
		t.Fatalf("status %d, err %v: not the file", resp.StatusCode, err)
	}
	if n := counterValue(e.edge.metrics.failovers); n < 2 {
		t.Errorf("failovers %v, want >= 2 (both nodes failed once)", n)
	}
}

func TestRunsFollowPerChunkRanking(t *testing.T) {
	big := newFixtureFile(t, "films/big.mp4", bigSize, 1)
	e := newEnv(t, 3, []*fixtureFile{big}, nil)
	want := map[*sppNode]int{}
	for _, r := range e.ranking(t, big) {
		want[r[0]]++ // each chunk from its home node, once
	}
	resp, body, err := e.do(t, "GET", "/films/big.mp4")
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, big.data) {
		t.Fatalf("status %d, err %v: not the file", resp.StatusCode, err)
	}
	for _, n := range e.nodes {
		if _, asked := n.stats(); asked != want[n] {
			t.Errorf("%s was asked for %d chunks, want the %d it is home for", n.id, asked, want[n])
		}
	}
}

func TestUnavailableBeforeHeaders(t *testing.T) {
	tests := []struct {
		name  string
		nodes int
		fault spptest.Faults
		down  bool
		rng   string
		code  int
	}{
		{"first chunk corrupt everywhere", 2, spptest.Faults{Corrupt: map[int]bool{0: true}}, false, "", 502},
		{"range start corrupt everywhere", 2, spptest.Faults{Corrupt: map[int]bool{5: true}}, false, fmt.Sprintf("bytes=%d-", 5*testChunk+1), 502},
		{"multipart first part corrupt", 2, spptest.Faults{Corrupt: map[int]bool{3: true}}, false, fmt.Sprintf("bytes=%d-%d,%d-%d", 3*testChunk, 3*testChunk+9, 6*testChunk, 6*testChunk+9), 502},
		{"manifest wrong everywhere", 2, spptest.Faults{WrongManifest: true}, false, "", 502},
		{"no cache node", 0, spptest.Faults{}, false, "", 503},
		{"tracker down", 1, spptest.Faults{}, true, "", 503},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			big := newFixtureFile(t, "films/big.mp4", bigSize, 1)
			other := newFixtureFile(t, "other.mp4", 3*testChunk, 9)
			e := newEnv(t, tc.nodes, []*fixtureFile{big, other}, nil)
			for _, n := range e.nodes {
				n.SetFaults(tc.fault)
			}
			if tc.down {
				e.tracker.Stop()
			}
			var hdr []string
			if tc.rng != "" {
				hdr = []string{"Range", tc.rng}
			}
			resp, body, err := e.do(t, "GET", "/films/big.mp4", hdr...)
			if err != nil {
				t.Fatalf("body: %v", err)
			}
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.code)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type %q, want the error text's", ct)
			}
			for _, h := range []string{"Etag", "Content-Range", "Last-Modified"} {
				if v := resp.Header.Get(h); v != "" {
					t.Errorf("error response carries %s %q", h, v)
				}
			}
			if bytes.Contains(body, big.data[5*testChunk+1:5*testChunk+17]) || bytes.Contains(body, big.data[:16]) || len(body) > 200 {
				t.Errorf("error body %.200q", body)
			}
		})
	}
}

func TestAbortAfterHeaders(t *testing.T) {
	tests := []struct {
		name string
		rng  string
	}{
		{"full GET", ""},
		{"open range", "bytes=100-"},
		{"multipart second part", fmt.Sprintf("bytes=0-9,%d-%d", 4*testChunk, 4*testChunk+9)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			big := newFixtureFile(t, "films/big.mp4", bigSize, 1)
			e := newEnv(t, 2, []*fixtureFile{big}, nil)
			for _, n := range e.nodes {
				n.SetFaults(spptest.Faults{Corrupt: map[int]bool{4: true}})
			}
			req, _ := http.NewRequest("GET", e.http.URL+"/films/big.mp4", nil)
			if tc.rng != "" {
				req.Header.Set("Range", tc.rng)
			}
			resp, err := e.http.Client().Do(req)
			if err != nil {
				// The abort came before the buffered headers were flushed:
				// the viewer sees a broken connection, never content.
				return
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				t.Fatalf("status %d, %d bytes: a short body must end in a broken connection", resp.StatusCode, len(body))
			}
			if resp.StatusCode != 200 && resp.StatusCode != 206 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if tc.rng == "" || tc.rng == "bytes=100-" {
				start := 0
				if tc.rng != "" {
					start = 100
				}
				if len(body) > 4*testChunk-start || !bytes.Equal(body, big.data[start:start+len(body)]) {
					t.Fatalf("got %d bytes, not a prefix of the file short of chunk 4", len(body))
				}
			} else if bytes.Contains(body, big.data[4*testChunk:4*testChunk+10]) {
				t.Fatal("the corrupt part's bytes were sent")
			}
		})
	}
}

func TestProbation(t *testing.T) {
	big := newFixtureFile(t, "films/big.mp4", bigSize, 1)
	e := newEnv(t, 2, []*fixtureFile{big}, nil)
	bad := e.ranking(t, big)[0][0]
	bad.SetFaults(spptest.Faults{Corrupt: map[int]bool{0: true}})
	get := func() {
		t.Helper()
		resp, body, err := e.do(t, "GET", "/films/big.mp4", "Range", "bytes=0-99")
		if err != nil || resp.StatusCode != 206 || !bytes.Equal(body, big.data[:100]) {
			t.Fatalf("status %d err %v: wrong answer", resp.StatusCode, err)
		}
	}
	get()
	if f, _ := bad.stats(); f != 1 {
		t.Fatalf("failing node fetched %d times, want 1", f)
	}
	get() // on probation: the other node is asked first
	if f, _ := bad.stats(); f != 1 {
		t.Fatalf("node on probation was asked again (%d fetches)", f)
	}
	e.clock.Advance(time.Minute)
	get() // probation over: it ranks first again, fails, the other serves
	if f, _ := bad.stats(); f != 2 {
		t.Fatalf("failing node fetched %d times after probation, want 2", f)
	}
}

func TestUnpublishTakesEffect(t *testing.T) {
	f := newFixtureFile(t, "a.mp4", 100, 1)
	e := newEnv(t, 1, []*fixtureFile{f}, nil)
	if resp, _, _ := e.do(t, "GET", "/a.mp4"); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	e.unpublish(t, "a.mp4")
	e.clock.Advance(2 * time.Second) // past FileTTL
	if resp, _, _ := e.do(t, "GET", "/a.mp4"); resp.StatusCode != 404 {
		t.Fatalf("unpublished file: status %d, want 404", resp.StatusCode)
	}
	e.publish(t, f)
	if resp, _, _ := e.do(t, "GET", "/a.mp4"); resp.StatusCode != 404 {
		t.Fatalf("within FileTTL the negative answer is reused: status %d, want 404", resp.StatusCode)
	}
	e.clock.Advance(2 * time.Second)
	if resp, _, _ := e.do(t, "GET", "/a.mp4"); resp.StatusCode != 200 {
		t.Fatalf("republished file: status %d, want 200", resp.StatusCode)
	}
}

func TestConcurrentRangesByteExact(t *testing.T) {
	big := newFixtureFile(t, "films/big.mp4", bigSize, 1)
	e := newEnv(t, 2, []*fixtureFile{big}, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 11))
			for range 8 {
				a := rng.Int64N(bigSize)
				b := a + rng.Int64N(min(3*testChunk, bigSize-a))
				req, _ := http.NewRequest("GET", e.http.URL+"/films/big.mp4", nil)
				req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", a, b))
				resp, err := e.http.Client().Do(req)
				if err != nil {
					errs <- err
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 206 || !bytes.Equal(body, big.data[a:b+1]) {
					errs <- fmt.Errorf("bytes=%d-%d: status %d err %v", a, b, resp.StatusCode, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := e.counted.locates.Load(); n != 1 {
		t.Errorf("%d Locate calls for 128 requests of one file within LocateTTL, want 1", n)
	}
}

func TestRootIsNoFile(t *testing.T) {
	e := newEnv(t, 1, []*fixtureFile{newFixtureFile(t, "a.mp4", 10, 1)}, nil)
	resp, _, err := e.do(t, "GET", "/")
	if err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /: status %d err %v, want 404", resp.StatusCode, err)
	}
}

func TestMetricsAndLog(t *testing.T) {
	f := newFixtureFile(t, "a.mp4", 2*testChunk+1, 1)
	// The log goes to a file, read back once the requests are answered
	// (other goroutines of the edge may log meanwhile).
	logFile, err := os.Create(filepath.Join(t.TempDir(), "edge.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	e := newEnv(t, 1, []*fixtureFile{f}, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(logFile, nil))
		c.TraceID = func(*http.Request) string { return "4bf92f3577b34da6a3ce929d0e0e4736" }
	})
	// Straight to the handler: its log line and metrics are written once
	// ServeHTTP returns, which a client cannot observe.
	req := httptest.NewRequest("GET", "/a.mp4", nil)
	req.Header.Set("Range", "bytes=0-99")
	rec := httptest.NewRecorder()
	e.edge.ServeHTTP(rec, req)
	if rec.Code != 206 || rec.Body.Len() != 100 {
		t.Fatalf("status %d, %d bytes", rec.Code, rec.Body.Len())
	}
	if got := rec.Header().Get("X-Trace-Id"); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("X-Trace-Id %q", got)
	}
	e.edge.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/missing", nil))
	if got := counterValue(e.edge.metrics.requests.WithLabelValues("206")); got != 1 {
		t.Errorf("requests{code=206} = %v", got)
	}
	if got := counterValue(e.edge.metrics.requests.WithLabelValues("404")); got != 1 {
		t.Errorf("requests{code=404} = %v", got)
	}
	if got := counterValue(e.edge.metrics.bytes); got < 100 {
		t.Errorf("bytes sent %v, want >= 100", got)
	}
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{"p2pd_edge_requests_total", "p2pd_edge_bytes_sent_total", "p2pd_edge_failovers_total", "p2pd_edge_active_requests", "p2pd_edge_request_duration_seconds"} {
		if !names[n] {
			t.Errorf("metric %s not registered", n)
		}
	}
	logged, err := os.ReadFile(logFile.Name())
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(logged)), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d log lines for 2 requests:\n%s", len(lines), logged)
	}
	for _, want := range []string{"method=GET", "path=/a.mp4", "status=206", "bytes=100", `range="bytes=0-99"`, "duration="} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("log line lacks %s: %s", want, lines[0])
		}
	}
}

func TestNameOf(t *testing.T) {
	tests := []struct {
		path string
		name string
		ok   bool
	}{
		{"/a.mp4", "a.mp4", true},
		{"/films/a b.mp4", "films/a b.mp4", true},
		{"/", "", false},
		{"a.mp4", "", false},
		{"/../a", "", false},
		{"/a/./b", "", false},
		{"/a\\b", "", false},
		{"/a/", "", false},
	}
	for _, tc := range tests {
		name, err := nameOf(tc.path)
		if (err == nil) != tc.ok || name != tc.name {
			t.Errorf("nameOf(%q) = %q, %v", tc.path, name, err)
		}
		if err != nil && !errors.Is(err, manifest.ErrBadName) {
			t.Errorf("nameOf(%q): %v is not ErrBadName", tc.path, err)
		}
	}
}

// TestHandlerIsPlain checks the handler works without a server or mux in
// front, as the p2pd binary's wrappers will use it.
func TestHandlerIsPlain(t *testing.T) {
	f := newFixtureFile(t, "a.mp4", 100, 1)
	e := newEnv(t, 1, []*fixtureFile{f}, nil)
	rec := httptest.NewRecorder()
	e.edge.ServeHTTP(rec, httptest.NewRequest("GET", "/a.mp4", nil))
	if rec.Code != 200 || !bytes.Equal(rec.Body.Bytes(), f.data) {
		t.Fatalf("status %d", rec.Code)
	}
	if got := rec.Header().Get("Content-Length"); got != strconv.Itoa(len(f.data)) {
		t.Errorf("Content-Length %q", got)
	}
}

func TestRangeFetchesOnlyWhatItNeeds(t *testing.T) {
	big := newFixtureFile(t, "films/big.mp4", bigSize, 1)
	tests := []struct {
		name   string
		method string
		hdr    []string
		code   int
		body   []byte
		want   int // chunks fetched
	}{
		{"aligned chunk", "GET", []string{"Range", fmt.Sprintf("bytes=%d-%d", 2*testChunk, 3*testChunk-1)}, 206, big.data[2*testChunk : 3*testChunk], 1},
		{"straddling chunk", "GET", []string{"Range", fmt.Sprintf("bytes=%d-%d", 2*testChunk+7, 3*testChunk+6)}, 206, big.data[2*testChunk+7 : 3*testChunk+7], 2},
		{"small", "GET", []string{"Range", "bytes=5-10"}, 206, big.data[5:11], 1},
		{"HEAD", "HEAD", nil, 200, nil, 0},
		{"not modified", "GET", []string{"If-None-Match", big.m.ETag()}, 304, nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 1, []*fixtureFile{big}, nil)
			// Straight to the handler: it has returned, and so has every
			// fetch it started, when the counts are read.
			req := httptest.NewRequest(tc.method, "/films/big.mp4", nil)
			for i := 0; i+1 < len(tc.hdr); i += 2 {
				req.Header.Set(tc.hdr[i], tc.hdr[i+1])
			}
			rec := httptest.NewRecorder()
			e.edge.ServeHTTP(rec, req)
			if rec.Code != tc.code || !bytes.Equal(rec.Body.Bytes(), tc.body) {
				t.Fatalf("status %d, %d bytes: wrong answer", rec.Code, rec.Body.Len())
			}
			if _, asked := e.nodes[0].stats(); asked != tc.want {
				t.Errorf("node was asked for %d chunks, want %d", asked, tc.want)
			}
		})
	}
}
