package e2e

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// artifactsDir receives the browser test's screenshots (git-ignored).
const artifactsDir = "artifacts"

// TestBrowser plays a real H.264 video in headless Chromium from the edge,
// seeks in it, and checks the dashboard's chunk map and its waterfall of a
// request's trace, read from a real Jaeger.
func TestBrowser(t *testing.T) {
	chrome := findChromium()
	if chrome == "" {
		t.Skip("chromium not found: install the Debian package chromium (.ci/run does)")
	}
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Skip("ffmpeg not found: install the Debian package ffmpeg (.ci/run does)")
	}
	media := t.TempDir()
	j := startJaeger(t)
	exportSpans(t, j.otlp)
	c := startAdminCDN(t, media, "--chunk-size", "524288", "--trace-query-url", j.query)
	requirePlayer(t, c)
	if err := os.MkdirAll(artifactsDir, 0o755); err != nil {
		t.Fatal(err)
	}

	// A 20 s H.264 video at a constant 8 Mbit/s (padded with filler), its
	// index first (faststart) so that playback starts before the whole
	// file has arrived.
	clip := filepath.Join(t.TempDir(), "clip.mp4")
	out, err := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "lavfi",
		"-i", "testsrc2=size=640x360:rate=25", "-t", "20", "-c:v", "libx264", "-preset", "ultrafast",
		"-b:v", "8M", "-minrate", "8M", "-maxrate", "8M", "-bufsize", "4M", "-x264-params", "nal-hrd=cbr",
		"-pix_fmt", "yuv420p", "-g", "25", "-movflags", "+faststart", "-y", clip).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	data, err := os.ReadFile(clip)
	if err != nil {
		t.Fatal(err)
	}
	const name = "videos/test clip.mp4"
	c.upload(t, url.PathEscape("videos")+"/"+url.PathEscape("test clip.mp4"), data)
	c.waitEdge(t, url.PathEscape("videos")+"/"+url.PathEscape("test clip.mp4"), 200)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome),
		chromedp.NoSandbox, // tests run as root in CI containers
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("mute-audio", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	bctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancel()
	// The first action's context bounds the browser's life: the whole
	// browser part of the test gets this long.
	ctx, cancel := context.WithTimeout(bctx, 4*time.Minute)
	defer cancel()
	poll := func(what, js string) {
		t.Helper()
		must(t, ctx, what, chromedp.Poll[chromedp.Void](js,
			chromedp.WithPollingTimeout(90*time.Second), chromedp.WithPollingInterval(100*time.Millisecond)))
	}
	const player = `document.getElementById('player')`

	// The edge's list of videos leads to the player page.
	must(t, ctx, "open the list", chromedp.Steps(chromedp.Navigate(c.edgeURL+"/"), chromedp.WaitVisible(chromedp.CSS(`a.watch`))))
	href := must(t, ctx, "read the link", chromedp.AttributeValue(chromedp.CSS(`a.watch`), "href"))
	if want := "/?watch=" + url.QueryEscape(name); href.Value != want {
		t.Fatalf("list links %q, want %q", href.Value, want)
	}
	shot(t, ctx, "edge-list")
	// The browser's downloads are throttled to 1.5 MB/s, 1.5 times the
	// video's rate: playback keeps up, but 15 s into the video is still
	// seconds of download away when the test seeks there, so the seek needs
	// a new Range request (unthrottled on loopback, Chromium has the whole
	// file before it seeks). A request is throttled from its start, so this
	// comes before the player page asks for the video's first bytes.
	throttle(t, ctx, 1.5e6)
	must(t, ctx, "open the player", chromedp.Steps(chromedp.Click(chromedp.CSS(`a.watch`), chromedp.NodeVisible), chromedp.WaitReady(chromedp.CSS(`#player`))))
	if ok := must(t, ctx, "probe H.264", chromedp.Evaluate[string](player+`.canPlayType('video/mp4; codecs="avc1.64001f"')`)); ok == "" {
		t.Fatal("this chromium cannot play H.264 MP4")
	}

	// Press play: the position advances.
	must(t, ctx, "press play", chromedp.Evaluate[bool](player+`.play().then(() => true)`, chromedp.EvalAwaitPromise))
	poll("playback advances", player+`.currentTime > 1`)
	shot(t, ctx, "player-playing")

	// Seek to 15 s: playback continues from there.
	before := len(rangeRequests(t, c.edge.log))
	if end := must(t, ctx, "buffered", chromedp.Evaluate[float64](`(() => { const b = `+player+`.buffered;
		return b.length ? b.end(b.length - 1) : 0; })()`)); end >= 14 {
		t.Fatalf("the browser has buffered up to %.1f s already: the seek would not need a Range request", end)
	}
	must(t, ctx, "seek", chromedp.Evaluate[float64](player+`.currentTime = 15`))
	poll("playback continues after the seek", `(() => { const v = `+player+`;
		return !v.seeking && !v.paused && !v.error && v.currentTime > 16; })()`)
	shot(t, ctx, "player-after-seek")
	// The browser asked the edge for byte ranges, and for one far into the
	// file to seek. The edge logs a request when it ends, so wait for it.
	eventually(t, 90*time.Second, "a Range request answered 206 from past the middle of the file", func() error {
		ranges := rangeRequests(t, c.edge.log)
		for _, r := range ranges[before:] {
			if r.status == 206 && r.start > int64(len(data))/2 {
				t.Logf("Range requests the edge answered (first byte, status): %v", ranges)
				return nil
			}
		}
		return fmt.Errorf("ranges requested (first byte, status): %v", ranges)
	})
	if n := metric(t, c.edgeOps, "p2pd_edge_requests_total", map[string]string{"code": "206"}); n == 0 {
		t.Fatal("the edge counted no 206 answer")
	}

	throttle(t, ctx, -1)

	crossOriginRanges(t, ctx, c, url.PathEscape("videos")+"/"+url.PathEscape("test clip.mp4"), data)

	// The dashboard's chunk map shows the file on the nodes that hold it:
	// the origin holds every chunk, the cachenode those it fetched for the
	// edge.
	must(t, ctx, "open the dashboard", chromedp.Navigate(c.adminURL+"/ui/#token="+url.QueryEscape(c.token)+"&file="+url.QueryEscape(name)))
	poll("chunk map drawn", `document.querySelectorAll('#chunkmap .maprow').length >= 2`)
	var chunks int
	eventually(t, 60*time.Second, "chunk map matches the holders", func() error {
		want, n, err := holders(t, c, name)
		if err != nil {
			return err
		}
		chunks = n
		got, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]int](`(() => { const out = {};
			for (const row of document.querySelectorAll('#chunkmap .maprow')) out[row.dataset.node] = row.querySelectorAll('.cell.held').length;
			return out; })()`))
		if err != nil {
			return err
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("map %v, holders %v", got, want)
		}
		roles := map[string]int{}
		for id, held := range want {
			role := must(t, ctx, "role of "+id, chromedp.Evaluate[string](`[...document.querySelectorAll('#chunkmap .maprow')].find(r => r.dataset.node === `+strconv.Quote(id)+`).dataset.role`))
			roles[role] = held
		}
		if roles["origin"] != n || roles["cachenode"] == 0 {
			return fmt.Errorf("held chunks by role %v of %d", roles, n)
		}
		return nil
	})
	if cells := must(t, ctx, "count cells", chromedp.Evaluate[int](`document.querySelector('#chunkmap .maprow').querySelectorAll('.cell').length`)); cells != chunks {
		t.Fatalf("a chunk map row has %d cells for %d chunks", cells, chunks)
	}
	shot(t, ctx, "dashboard")

	// Purge from the dashboard (two clicks: the first arms the button),
	// then prewarm on every cachenode; the map follows both.
	must(t, ctx, "click purge twice", chromedp.Evaluate[chromedp.Void](`document.getElementById('purge').click(); document.getElementById('purge').click()`))
	poll("purge done", `document.getElementById('cache-status').textContent.includes('done, no cachenode holds a chunk') &&
		![...document.querySelectorAll('#chunkmap .maprow')].some(r => r.dataset.role === 'cachenode')`)
	shot(t, ctx, "dashboard-purged")
	must(t, ctx, "click prewarm", chromedp.Evaluate[chromedp.Void](`document.getElementById('prewarm').click()`))
	poll("prewarm done", `document.getElementById('cache-status').textContent.includes('done, every chunk on every chosen node')`)
	want, n, err := holders(t, c, name)
	if err != nil {
		t.Fatal(err)
	}
	for id, held := range want {
		if held != n {
			t.Errorf("after the dashboard's prewarm %s holds %d of %d chunks", id, held, n)
		}
	}
	shot(t, ctx, "dashboard-prewarmed")
	// The trace view: a file no node has yet, so its first request goes
	// from the edge through the tracker and a cachenode to the origin.
	c.upload(t, "traced.bin", randomBytes(300<<10))
	resp, _ := get(t, "GET", c.edgeURL+"/traced.bin", map[string]string{"Range": "bytes=1000-1999"})
	traceID := resp.Header.Get("X-Trace-Id")
	if resp.StatusCode != 206 || len(traceID) != 32 {
		t.Fatalf("GET traced.bin: %d, X-Trace-Id %q", resp.StatusCode, traceID)
	}
	type span struct{ SpanID, ParentSpanID, Service, Name string }
	var spans []span
	eventually(t, 60*time.Second, "the admin API returns the request's spans from the trace store", func() error {
		code, body := c.admin(t, "GET", "/v1/traces/"+traceID, nil)
		var tr struct{ Spans []span }
		if err := json.Unmarshal(body, &tr); code != 200 || err != nil {
			return fmt.Errorf("%d %s", code, body)
		}
		services := map[string]bool{}
		root := false
		for _, sp := range tr.Spans {
			services[sp.Service] = true
			root = root || sp.ParentSpanID == "" && sp.Service == "edge"
		}
		// The edge's own span ends last (with the response): the trace
		// is whole once it is there.
		if !root || !services["cachenode"] || !services["tracker"] {
			return fmt.Errorf("services %v, the edge's root span there: %v", services, root)
		}
		spans = tr.Spans
		return nil
	})
	must(t, ctx, "open the trace view", chromedp.Navigate(c.adminURL+"/ui/#trace="+traceID))
	// Spans that ended after the API's answer (a cachenode's background
	// work in the same trace) may be drawn too: at least these.
	poll("waterfall drawn", fmt.Sprintf(`document.querySelectorAll('#waterfall .span').length >= %d`, len(spans)))
	rows := must(t, ctx, "read the waterfall", chromedp.Evaluate[[]map[string]string](`[...document.querySelectorAll('#waterfall .span')].map(r =>
		({span: r.dataset.span, service: r.dataset.service, depth: r.dataset.depth, bar: r.querySelector('.bar').style.width}))`))
	if n := len(slices.DeleteFunc(slices.Clone(rows), func(r map[string]string) bool { return r["depth"] != "0" })); n != 1 ||
		rows[0]["depth"] != "0" || rows[0]["service"] != "edge" {
		t.Errorf("waterfall rows %v: want one root, the edge's span, first", rows)
	}
	drawn := map[string]bool{}
	for _, r := range rows {
		drawn[r["span"]] = true
		if r["bar"] == "" {
			t.Errorf("span %v has no bar", r)
		}
	}
	for _, sp := range spans {
		if !drawn[sp.SpanID] {
			t.Errorf("span %s (%s %s) is not in the waterfall", sp.SpanID, sp.Service, sp.Name)
		}
	}
	// A span's attributes show on click.
	must(t, ctx, "click the root span", chromedp.Click(chromedp.CSS(`#waterfall .span[data-depth="0"]`), chromedp.NodeVisible))
	attrs := must(t, ctx, "read its attributes", chromedp.Evaluate[string](`document.getElementById('span-attrs').innerText`))
	if !strings.Contains(attrs, "edge") || !strings.Contains(attrs, "206") {
		t.Errorf("root span attributes %q: want its service and status 206", attrs)
	}
	shot(t, ctx, "trace")
}

// crossOriginRanges opens a page served from another origin (another
// loopback address and port, as a content provider's own site would be)
// whose script reads byte ranges of the video from the edge with fetch()
// and a Range header: the browser sends a CORS preflight, and reads the
// bytes and the exposed headers only if the edge allows it.
func crossOriginRanges(t *testing.T, ctx context.Context, c *adminCDN, path string, data []byte) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.99:0")
	if err != nil {
		t.Fatal(err)
	}
	site := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><title>a player site</title><p id="site">another origin</p>`)
	}))
	site.Listener = l
	site.Start()
	defer site.Close()
	must(t, ctx, "open the other origin's page", chromedp.Steps(chromedp.Navigate(site.URL+"/"), chromedp.WaitVisible(chromedp.CSS(`#site`))))
	n := len(data)
	ranges := [][2]int{{0, 99}, {n / 2, n/2 + 4095}, {n - 50, n - 1}}
	js := `(async () => {
		const out = [];
		for (const [a, b] of ` + toJSON(t, ranges) + `) {
			const r = await fetch(` + strconv.Quote(c.edgeURL+"/"+path) + `, { headers: { Range: 'bytes=' + a + '-' + b } });
			const bytes = new Uint8Array(await r.arrayBuffer());
			let hex = '';
			for (const x of bytes) hex += x.toString(16).padStart(2, '0');
			out.push({ origin: location.origin, status: r.status, hex,
				contentRange: r.headers.get('Content-Range'), contentLength: r.headers.get('Content-Length'),
				acceptRanges: r.headers.get('Accept-Ranges'), etag: r.headers.get('ETag'), traceId: r.headers.get('X-Trace-Id') });
		}
		return out;
	})()`
	type answer struct {
		Origin, Hex, ContentRange, ContentLength, AcceptRanges, Etag, TraceID string
		Status                                                                int
	}
	got := must(t, ctx, "fetch ranges from another origin", chromedp.Evaluate[[]answer](js, chromedp.EvalAwaitPromise))
	if len(got) != len(ranges) {
		t.Fatalf("%d answers for %d ranges", len(got), len(ranges))
	}
	for i, r := range ranges {
		a := got[i]
		wantRange := fmt.Sprintf("bytes %d-%d/%d", r[0], r[1], n)
		if a.Origin != site.URL || a.Status != 206 || a.Hex != hex.EncodeToString(data[r[0]:r[1]+1]) || a.ContentRange != wantRange ||
			a.ContentLength != strconv.Itoa(r[1]-r[0]+1) || a.AcceptRanges != "bytes" || a.Etag == "" || a.TraceID == "" {
			t.Fatalf("range %v from %s: status %d, %d bytes (equal %v), Content-Range %q (want %q), Content-Length %q, Accept-Ranges %q, ETag %q, X-Trace-Id %q",
				r, a.Origin, a.Status, len(a.Hex)/2, a.Hex == hex.EncodeToString(data[r[0]:r[1]+1]), a.ContentRange, wantRange,
				a.ContentLength, a.AcceptRanges, a.Etag, a.TraceID)
		}
	}
}

// toJSON encodes v for a script.
func toJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// throttle limits the browser's download rate to bytesPerSecond (-1:
// unlimited).
func throttle(t *testing.T, ctx context.Context, bytesPerSecond float64) {
	t.Helper()
	must(t, ctx, "throttle the network", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, tg, network.EmulateNetworkConditionsByRule, network.EmulateNetworkConditionsByRuleParams{
			MatchedNetworkConditions: []*network.Conditions{{DownloadThroughput: bytesPerSecond, UploadThroughput: -1}},
		})
		return err
	}))
}

// must runs a browser action, failing the test with a screenshot when it
// fails.
func must[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		shot(t, ctx, "failed-"+strings.ReplaceAll(what, " ", "-"))
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// findChromium returns the path of a Chromium or Chrome binary, if any.
func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// requirePlayer fails the test when the edge does not serve the player
// pages.
func requirePlayer(t *testing.T, c *adminCDN) {
	t.Helper()
	_, body := get(t, "GET", c.edgeURL+"/", nil)
	if !strings.Contains(string(body), `id="videos"`) && !strings.Contains(string(body), `id="empty"`) {
		t.Fatal("the edge does not serve the player page at /")
	}
}

// holders returns, per node id, how many chunks of name it holds, and the
// file's chunk count, as the admin API reports them.
func holders(t *testing.T, c *adminCDN, name string) (map[string]int, int, error) {
	code, body := c.admin(t, "GET", "/v1/files/"+url.PathEscape("videos")+"/"+url.PathEscape(strings.TrimPrefix(name, "videos/")), nil)
	var d struct {
		File    struct{ ChunkCount int }
		Holders []struct {
			NodeID string `json:"nodeId"`
			Chunks int
		}
	}
	if err := json.Unmarshal(body, &d); code != 200 || err != nil {
		return nil, 0, fmt.Errorf("show %s: %d %s", name, code, body)
	}
	out := map[string]int{}
	for _, h := range d.Holders {
		out[h.NodeID] = h.Chunks
	}
	return out, d.File.ChunkCount, nil
}

// rangeRE matches the edge's log line of a request with a Range header.
var rangeRE = regexp.MustCompile(`msg=request .*status=(\d+) .*range="?bytes=(\d+)-`)

// rangeRequest is a Range request the edge logged.
type rangeRequest struct {
	start  int64
	status int
}

// rangeRequests lists the Range requests in the edge's log, in the order
// they ended.
func rangeRequests(t *testing.T, log string) []rangeRequest {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	var out []rangeRequest
	for _, m := range rangeRE.FindAllSubmatch(b, -1) {
		status, _ := strconv.Atoi(string(m[1]))
		start, _ := strconv.ParseInt(string(m[2]), 10, 64)
		out = append(out, rangeRequest{start, status})
	}
	return out
}

// shot saves a screenshot of the page under artifactsDir.
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // below 100 it is a JPEG
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(artifactsDir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	t.Logf("screenshot %s", p)
}
