package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonv1 "go.opentelemetry.io/proto/otlp/common/v1"
	tracev1 "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// collector is an OTLP/gRPC trace receiver: the services export to it as
// they would to Jaeger.
type collector struct {
	collectortrace.UnimplementedTraceServiceServer
	addr string

	mu    sync.Mutex
	spans []*span
}

// span is an exported span, flattened for assertions.
type span struct {
	service           string // resource service.name
	instance          string // resource service.instance.id
	name              string
	kind              tracev1.Span_SpanKind
	trace, id, parent string
	attrs             map[string]any
	events            []event
	failed            bool // status error
}

type event struct {
	name  string
	attrs map[string]any
}

func (s *span) String() string {
	return fmt.Sprintf("%s %q (%s, parent %s) %v", s.service, s.name, s.id, s.parent, s.attrs)
}

func (s *span) int(key string) int64  { v, _ := s.attrs[key].(int64); return v }
func (s *span) str(key string) string { v, _ := s.attrs[key].(string); return v }

func startCollector(t *testing.T) *collector {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{addr: l.Addr().String()}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, c)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return c
}

// Export implements the OTLP trace service.
func (c *collector) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		res := attrMap(rs.GetResource().GetAttributes())
		service, _ := res["service.name"].(string)
		instance, _ := res["service.instance.id"].(string)
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				sp := &span{
					service: service, instance: instance, name: s.Name, kind: s.Kind,
					trace: hex.EncodeToString(s.TraceId), id: hex.EncodeToString(s.SpanId),
					parent: hex.EncodeToString(s.ParentSpanId), attrs: attrMap(s.Attributes),
					failed: s.GetStatus().GetCode() == tracev1.Status_STATUS_CODE_ERROR,
				}
				for _, e := range s.Events {
					sp.events = append(sp.events, event{name: e.Name, attrs: attrMap(e.Attributes)})
				}
				c.spans = append(c.spans, sp)
			}
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func attrMap(kvs []*commonv1.KeyValue) map[string]any {
	m := map[string]any{}
	for _, kv := range kvs {
		switch v := kv.Value.GetValue().(type) {
		case *commonv1.AnyValue_StringValue:
			m[kv.Key] = v.StringValue
		case *commonv1.AnyValue_IntValue:
			m[kv.Key] = v.IntValue
		case *commonv1.AnyValue_BoolValue:
			m[kv.Key] = v.BoolValue
		case *commonv1.AnyValue_DoubleValue:
			m[kv.Key] = v.DoubleValue
		case *commonv1.AnyValue_ArrayValue:
			var ss []string
			for _, e := range v.ArrayValue.Values {
				ss = append(ss, e.GetStringValue())
			}
			m[kv.Key] = ss
		}
	}
	return m
}

// trace returns the spans of one trace received so far.
func (c *collector) trace(id string) []*span {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*span
	for _, s := range c.spans {
		if s.trace == id {
			out = append(out, s)
		}
	}
	return out
}

// find returns the spans of a service with a name.
func find(spans []*span, service, name string) []*span {
	var out []*span
	for _, s := range spans {
		if s.service == service && s.name == name {
			out = append(out, s)
		}
	}
	return out
}

// ancestors returns s's chain of parents within spans, nearest first. It
// fails the test if a parent is missing: every span of a request must
// hang off the edge's.
func ancestors(t *testing.T, spans []*span, s *span, root *span) []*span {
	t.Helper()
	byID := map[string]*span{}
	for _, sp := range spans {
		byID[sp.id] = sp
	}
	var out []*span
	for cur := s; cur != root; {
		p, ok := byID[cur.parent]
		if !ok {
			t.Fatalf("span %v: parent %s is not in the trace", cur, cur.parent)
		}
		out = append(out, p)
		cur = p
	}
	return out
}

// startEdge starts one more edge on c's tracker with extra flags and
// returns its URL and ops address.
func (c *cdn) startEdge(t *testing.T, name string, args ...string) (string, string) {
	t.Helper()
	tracker := ""
	for i, a := range c.tracker.cmd.Args {
		if a == "--listen" && i+1 < len(c.tracker.cmd.Args) {
			tracker = c.tracker.cmd.Args[i+1]
		}
	}
	addr, ops := freeAddr(t, "127.0.0.6"), freeAddr(t, "127.0.0.6")
	start(t, name, "edge", append([]string{"--listen", addr, "--tracker", tracker, "--ops", ops}, args...)...)
	waitReady(t, ops)
	return "http://" + addr, ops
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func TestTracing(t *testing.T) {
	col := startCollector(t)
	exportSpans(t, col.addr)
	media := t.TempDir()
	const chunk = 1 << 20
	const name = "traced/clip.mp4"
	data := randomFile(t, media, name, 6*chunk+12345)
	c := startCDN(t, media)
	// Wait for the publication and both nodes without asking the edge, so
	// the traced request is the edge's first and its trace shows the
	// lookups (GetFile, Locate, GetManifest) as well.
	eventually(t, 30*time.Second, "file published, origin and cachenode registered", func() error {
		files := metric(t, c.trackerOps, "p2pd_tracker_files", nil)
		nodes := metric(t, c.trackerOps, "p2pd_tracker_nodes", nil)
		holdings := metric(t, c.trackerOps, "p2pd_tracker_holdings", nil)
		if files < 1 || nodes < 2 || holdings < 1 {
			return fmt.Errorf("%v files, %v nodes, %v holdings", files, nodes, holdings)
		}
		return nil
	})
	// Chunks 1 and 2: within the edge's first read-ahead window, so the
	// request asks the cachenode for exactly these two.
	from, to := chunk+100, 2*chunk+50
	rng := fmt.Sprintf("bytes=%d-%d", from, to)

	// request sends the ranged GET as part of a new trace and returns the
	// trace id and the id of the caller's span.
	request := func(t *testing.T, base string) (string, string) {
		t.Helper()
		traceID, parent := randomHex(16), randomHex(8)
		resp, body := get(t, "GET", base+"/"+name, map[string]string{
			"Range":       rng,
			"traceparent": "00-" + traceID + "-" + parent + "-01",
		})
		if resp.StatusCode != 206 || !bytes.Equal(body, data[from:to+1]) {
			t.Fatalf("GET %s: status %d, %d bytes, equal %v", rng, resp.StatusCode, len(body), bytes.Equal(body, data[from:to+1]))
		}
		if got := resp.Header.Get("X-Trace-Id"); got != traceID {
			t.Fatalf("X-Trace-Id %q, want the caller's trace id %q", got, traceID)
		}
		return traceID, parent
	}
	// edgeSpan waits for the edge's span of the trace (the edge ends it
	// last) and checks it continues the caller's.
	edgeSpan := func(t *testing.T, traceID, parent string) *span {
		t.Helper()
		var root *span
		eventually(t, 10*time.Second, "the edge's span", func() error {
			for _, s := range col.trace(traceID) {
				if s.service == "edge" && s.kind == tracev1.Span_SPAN_KIND_SERVER {
					root = s
					return nil
				}
			}
			return fmt.Errorf("not received")
		})
		if root.parent != parent {
			t.Fatalf("edge span's parent %s, want the caller's span %s", root.parent, parent)
		}
		if root.str("p2pd.file") != name || root.str("p2pd.range") != rng || root.int("p2pd.status") != 206 ||
			root.int("p2pd.bytes_sent") != int64(to-from+1) || root.int("http.response.status_code") != 206 {
			t.Fatalf("edge span attributes: %v", root.attrs)
		}
		if !strings.HasPrefix(root.instance, "edge@") {
			t.Fatalf("edge span's service.instance.id %q", root.instance)
		}
		return root
	}

	var coldTrace string
	t.Run("cold", func(t *testing.T) {
		traceID, parent := request(t, c.edgeURL)
		coldTrace = traceID
		root := edgeSpan(t, traceID, parent)
		var spans []*span
		eventually(t, 10*time.Second, "spans of all four services", func() error {
			spans = col.trace(traceID)
			for _, want := range [][2]string{
				{"tracker", "tracker.v1.TrackerService/Locate"},
				{"cachenode", "spp.v1.ChunkService/Fetch"},
				{"cachenode", "spp.fetch"},
				{"origin", "spp.v1.ChunkService/Fetch"},
				{"edge", "spp.fetch"},
			} {
				if len(find(spans, want[0], want[1])) == 0 {
					return fmt.Errorf("no %s span %q yet among %d", want[0], want[1], len(spans))
				}
			}
			return nil
		})
		// Let the last spans (the origin's stream ends after its last
		// chunk went out) arrive too.
		time.Sleep(300 * time.Millisecond)
		spans = col.trace(traceID)
		for _, s := range spans {
			ancestors(t, spans, s, root) // every span hangs off the edge's
			if s.failed && !cancelledFetch(s) {
				t.Errorf("span failed: %v", s)
			}
		}
		if testing.Verbose() {
			for _, s := range spans {
				t.Logf("%v events %v", s, s.events)
			}
		}

		locates := find(spans, "tracker", "tracker.v1.TrackerService/Locate")
		for _, s := range locates {
			if s.int("p2pd.candidates") < 1 || len(s.attrs["p2pd.chosen"].([]string)) == 0 {
				t.Errorf("Locate span without candidates or choice: %v", s)
			}
		}

		var hits, misses int64
		for _, s := range find(spans, "cachenode", "spp.v1.ChunkService/Fetch") {
			if s.kind != tracev1.Span_SPAN_KIND_SERVER {
				continue
			}
			if s.str("p2pd.cache") != "miss" {
				t.Errorf("cold serve span: %v", s)
			}
			hits += s.int("p2pd.chunk.hits")
			misses += s.int("p2pd.chunk.misses")
			for _, e := range s.events {
				if e.name == "chunks" && e.attrs["p2pd.source"] != "origin" {
					t.Errorf("cold serve span: run from %v", e.attrs)
				}
			}
			if up := ancestors(t, spans, s, root); up[0].service != "edge" {
				t.Errorf("cachenode serve span's parent is %v, want the edge's client span", up[0])
			}
		}
		if hits != 0 || misses != 2 {
			t.Errorf("cachenode served %d hits and %d misses, want 0 and 2", hits, misses)
		}

		var fetched int64
		for _, s := range find(spans, "cachenode", "spp.fetch") {
			if s.str("p2pd.source") != "origin" || !strings.HasPrefix(s.str("p2pd.node"), "origin@") ||
				s.int("p2pd.chunk.count") < 1 || s.int("p2pd.chunk.delivered") != s.int("p2pd.chunk.count") ||
				s.int("p2pd.rate_bytes_per_second") <= 0 {
				t.Errorf("cachenode fetch span: %v", s)
			}
			fetched += s.int("p2pd.bytes")
			if !slices.ContainsFunc(ancestors(t, spans, s, root), func(a *span) bool {
				return a.service == "cachenode" && a.name == "spp.v1.ChunkService/Fetch"
			}) {
				t.Errorf("cachenode fetch span %v is not under the cachenode's serve span", s)
			}
		}
		if fetched != 2*chunk {
			t.Errorf("cachenode fetched %d bytes from the origin, want %d", fetched, 2*chunk)
		}

		var egress int64
		for _, s := range find(spans, "origin", "spp.v1.ChunkService/Fetch") {
			if s.str("p2pd.file") != name {
				t.Errorf("origin span: %v", s)
			}
			egress += s.int("p2pd.bytes")
			if !slices.ContainsFunc(ancestors(t, spans, s, root), func(a *span) bool {
				return a.service == "cachenode" && a.name == "spp.fetch"
			}) {
				t.Errorf("origin span %v is not under a cachenode fetch", s)
			}
		}
		if egress != 2*chunk {
			t.Errorf("origin spans sent %d bytes, want %d", egress, 2*chunk)
		}

		for _, s := range find(spans, "edge", "spp.fetch") {
			if !strings.HasPrefix(s.str("p2pd.node"), "cachenode@") || s.parent != root.id {
				t.Errorf("edge fetch span: %v", s)
			}
		}
	})

	// hot checks a second request for the same range: served without
	// the origin, from the edge's memory or the cachenode's store.
	hot := func(t *testing.T, url, where string) {
		t.Helper()
		if coldTrace == "" {
			t.Skip("the cold request failed")
		}
		traceID, parent := request(t, url)
		root := edgeSpan(t, traceID, parent)
		var serves []*span
		if where == "cachenode" {
			eventually(t, 10*time.Second, "the cachenode's serve span", func() error {
				serves = find(col.trace(traceID), "cachenode", "spp.v1.ChunkService/Fetch")
				if len(serves) == 0 {
					return fmt.Errorf("not received")
				}
				return nil
			})
		}
		time.Sleep(300 * time.Millisecond)
		spans := col.trace(traceID)
		for _, s := range spans {
			ancestors(t, spans, s, root)
			if s.failed && !cancelledFetch(s) {
				t.Errorf("span failed: %v", s)
			}
			if s.service == "origin" || (s.service == "cachenode" && s.name == "spp.fetch") {
				t.Errorf("hot request reached past the cachenode: %v", s)
			}
			// The edge looks a name up again once FileTTL (1 s) has
			// passed since the cold request: metadata from the tracker,
			// not data. Any other hop means the chunks did not come from
			// the edge's memory.
			lookup := s.service == "tracker" && s.name == "tracker.v1.TrackerService/GetFile"
			if where == "edge" && s.service != "edge" && !lookup {
				t.Errorf("request served from the edge's memory reached %v", s)
			}
		}
		var hits int64
		if where == "edge" {
			for _, e := range root.events {
				if e.name == "chunks" && e.attrs["p2pd.source"] == "memory" {
					hits += e.attrs["p2pd.chunk.count"].(int64)
				}
			}
		}
		for _, s := range find(spans, "cachenode", "spp.v1.ChunkService/Fetch") {
			if s.str("p2pd.cache") != "hit" || s.int("p2pd.chunk.misses") != 0 {
				t.Errorf("hot serve span: %v", s)
			}
			hits += s.int("p2pd.chunk.hits")
			for _, e := range s.events {
				if e.name == "chunks" && e.attrs["p2pd.source"] != "local" {
					t.Errorf("hot serve span: run from %v", e.attrs)
				}
			}
		}
		if hits != 2 {
			t.Errorf("%d hits in the %s, want 2", hits, where)
		}
	}
	t.Run("hot in the edge's memory", func(t *testing.T) { hot(t, c.edgeURL, "edge") })
	t.Run("hot in the cachenode", func(t *testing.T) {
		// Chunks are stored beside the stream: wait until they are.
		eventually(t, 10*time.Second, "chunks stored", func() error {
			if b := metric(t, c.cacheOps, "p2pd_cachenode_store_bytes", nil); b < 2*chunk {
				return fmt.Errorf("%v bytes stored", b)
			}
			return nil
		})
		time.Sleep(100 * time.Millisecond)
		// A second edge, without a memory cache, asks the cachenode.
		edge2, _ := c.startEdge(t, "edge2", "--memory-cache", "0")
		hot(t, edge2, "cachenode")
	})

	t.Run("no traceparent", func(t *testing.T) {
		resp, _ := get(t, "GET", c.edgeURL+"/"+name, map[string]string{"Range": "bytes=0-99"})
		id := resp.Header.Get("X-Trace-Id")
		if len(id) != 32 || id == coldTrace || strings.Trim(id, "0") == "" {
			t.Fatalf("X-Trace-Id %q: want a fresh trace id", id)
		}
		eventually(t, 10*time.Second, "the new trace", func() error {
			for _, s := range col.trace(id) {
				if s.service == "edge" && s.kind == tracev1.Span_SPAN_KIND_SERVER && s.parent == "" {
					return nil
				}
			}
			return fmt.Errorf("no root span from the edge")
		})
	})
}

// cancelledFetch reports a client's SPP stream it cancelled itself: the
// edge drops the rest of a read-ahead window once the viewer's range is
// sent, and gRPC marks such a span CANCELLED. That is not a failure.
func cancelledFetch(s *span) bool {
	return s.name == "spp.v1.ChunkService/Fetch" && s.attrs["rpc.response.status_code"] == "CANCELLED"
}
