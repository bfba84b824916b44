package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape returns the metric families an ops listener exposes.
func scrape(t *testing.T, ops string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + ops + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", ops, err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse metrics of %s: %v", ops, err)
	}
	return families
}

// histCount returns the observation count of a histogram's samples whose
// labels include want.
func histCount(t *testing.T, ops, name string, want map[string]string) uint64 {
	t.Helper()
	var n uint64
	for _, m := range scrape(t, ops)[name].GetMetric() {
		match := true
		for k, v := range want {
			found := false
			for _, l := range m.Label {
				found = found || (l.GetName() == k && l.GetValue() == v)
			}
			match = match && found
		}
		if match {
			n += m.GetHistogram().GetSampleCount()
		}
	}
	return n
}

// counter is a metric to follow: ops address, name and labels.
type counter struct {
	ops, name    string
	label, value string // at most one label to match
}

func (c counter) labels() map[string]string {
	if c.label == "" {
		return nil
	}
	return map[string]string{c.label: c.value}
}

func (c counter) String() string { return fmt.Sprintf("%s{%s=%q}", c.name, c.label, c.value) }

// settle waits until every counter moved from before by exactly its
// delta; counters are updated as bytes leave a node, so the last ones may
// trail the response by a moment. It fails on the counters that did not.
func settle(t *testing.T, before map[counter]float64, deltas map[counter]float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var wrong []string
		for c, d := range deltas {
			if got := metric(t, c.ops, c.name, c.labels()) - before[c]; got != d {
				wrong = append(wrong, fmt.Sprintf("%v moved by %v, want %v", c, got, d))
			}
		}
		if len(wrong) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, w := range wrong {
				t.Error(w)
			}
			t.FailNow()
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func snapshot(t *testing.T, cs map[counter]float64) map[counter]float64 {
	t.Helper()
	out := map[counter]float64{}
	for c := range cs {
		out[c] = metric(t, c.ops, c.name, c.labels())
	}
	return out
}

func TestMetrics(t *testing.T) {
	media := t.TempDir()
	const chunk = 1 << 20
	const chunks = 6
	const size = (chunks-1)*chunk + 777
	const name = "metrics/clip.webm"
	data := randomFile(t, media, name, size)
	c := startCDN(t, media)
	c.waitServed(t, name) // HEAD requests: counted by the edge, no chunk moves
	url := c.edgeURL + "/" + name

	edgeBytes := counter{c.edgeOps, "p2pd_edge_bytes_sent_total", "", ""}
	edge200 := counter{c.edgeOps, "p2pd_edge_requests_total", "code", "200"}
	edge206 := counter{c.edgeOps, "p2pd_edge_requests_total", "code", "206"}
	edgeMemory := counter{c.edgeOps, "p2pd_edge_memory_cache_hits_total", "", ""}
	// A second edge without a memory cache: its requests reach the
	// cachenode's store.
	edge2URL, edge2Ops := c.startEdge(t, "edge2", "--memory-cache", "0")
	edge2Bytes := counter{edge2Ops, "p2pd_edge_bytes_sent_total", "", ""}
	edge2206 := counter{edge2Ops, "p2pd_edge_requests_total", "code", "206"}
	edge2200 := counter{edge2Ops, "p2pd_edge_requests_total", "code", "200"}
	servedLocal := counter{c.cacheOps, "p2pd_cachenode_bytes_served_total", "source", "local"}
	servedPeer := counter{c.cacheOps, "p2pd_cachenode_bytes_served_total", "source", "peer"}
	servedOrigin := counter{c.cacheOps, "p2pd_cachenode_bytes_served_total", "source", "origin"}
	chunksLocal := counter{c.cacheOps, "p2pd_cachenode_chunks_served_total", "source", "local"}
	chunksOrigin := counter{c.cacheOps, "p2pd_cachenode_chunks_served_total", "source", "origin"}
	fetchedOrigin := counter{c.cacheOps, "p2pd_cachenode_fetched_bytes_total", "source", "origin"}
	cacheDigest := counter{c.cacheOps, "p2pd_cachenode_digest_failures_total", "", ""}
	egress := counter{c.originOps, "p2pd_origin_egress_bytes_total", "", ""}
	originChunks := counter{c.originOps, "p2pd_origin_chunks_served_total", "", ""}
	originDigest := counter{c.originOps, "p2pd_origin_digest_failures_total", "", ""}
	all := map[counter]float64{edgeBytes: 0, edge200: 0, edge206: 0, edgeMemory: 0,
		edge2Bytes: 0, edge2200: 0, edge2206: 0, servedLocal: 0, servedPeer: 0, servedOrigin: 0,
		chunksLocal: 0, chunksOrigin: 0, fetchedOrigin: 0, cacheDigest: 0, egress: 0, originChunks: 0, originDigest: 0}
	// with returns deltas: every followed counter still, except those given.
	with := func(moved map[counter]float64) map[counter]float64 {
		d := map[counter]float64{}
		for c := range all {
			d[c] = moved[c]
		}
		return d
	}
	idle := func(t *testing.T) {
		t.Helper()
		eventually(t, 5*time.Second, "no request or stream in progress", func() error {
			for _, g := range []counter{
				{ops: c.edgeOps, name: "p2pd_edge_active_requests"},
				{ops: c.cacheOps, name: "p2pd_cachenode_active_streams"},
				{ops: c.originOps, name: "p2pd_origin_active_streams"},
			} {
				if v := metric(t, g.ops, g.name, nil); v != 0 {
					return fmt.Errorf("%s = %v", g.name, v)
				}
			}
			return nil
		})
	}

	t.Run("cold full GET", func(t *testing.T) {
		before := snapshot(t, all)
		fetches := histCount(t, c.cacheOps, "p2pd_cachenode_chunk_fetch_seconds", map[string]string{"source": "origin"})
		durations := histCount(t, c.edgeOps, "p2pd_edge_request_duration_seconds", nil)
		resp, body := get(t, "GET", url, nil)
		if resp.StatusCode != 200 || !bytes.Equal(body, data) {
			t.Fatalf("GET: status %d, %d bytes", resp.StatusCode, len(body))
		}
		// Bytes sent is what the viewer received; every chunk crossed from
		// the origin to the cachenode exactly once.
		settle(t, before, with(map[counter]float64{
			edgeBytes: float64(len(body)), edge200: 1,
			servedOrigin: size, chunksOrigin: chunks, fetchedOrigin: size,
			egress: size, originChunks: chunks,
		}))
		if got := histCount(t, c.cacheOps, "p2pd_cachenode_chunk_fetch_seconds", map[string]string{"source": "origin"}) - fetches; got != chunks {
			t.Errorf("chunk fetch latency observed %d times, want %d", got, chunks)
		}
		if got := histCount(t, c.edgeOps, "p2pd_edge_request_duration_seconds", nil) - durations; got != 1 {
			t.Errorf("request duration observed %d times, want 1", got)
		}
		eventually(t, 5*time.Second, "chunks stored", func() error {
			if v := metric(t, c.cacheOps, "p2pd_cachenode_store_bytes", nil); v != size {
				return fmt.Errorf("store holds %v bytes, want %d", v, size)
			}
			return nil
		})
		idle(t)
	})

	t.Run("hot full GET from the edge's memory", func(t *testing.T) {
		before := snapshot(t, all)
		resp, body := get(t, "GET", url, nil)
		if resp.StatusCode != 200 || !bytes.Equal(body, data) {
			t.Fatalf("GET: status %d, %d bytes", resp.StatusCode, len(body))
		}
		settle(t, before, with(map[counter]float64{
			edgeBytes: float64(len(body)), edge200: 1, edgeMemory: chunks,
		}))
		idle(t)
	})

	t.Run("hot full GET from the cachenode", func(t *testing.T) {
		before := snapshot(t, all)
		resp, body := get(t, "GET", edge2URL+"/"+name, nil)
		if resp.StatusCode != 200 || !bytes.Equal(body, data) {
			t.Fatalf("GET: status %d, %d bytes", resp.StatusCode, len(body))
		}
		settle(t, before, with(map[counter]float64{
			edge2Bytes: float64(len(body)), edge2200: 1,
			servedLocal: size, chunksLocal: chunks,
		}))
		idle(t)
	})

	t.Run("hot range from the cachenode", func(t *testing.T) {
		before := snapshot(t, all)
		resp, body := get(t, "GET", edge2URL+"/"+name, map[string]string{"Range": fmt.Sprintf("bytes=100-%d", chunk+99)})
		if resp.StatusCode != 206 || !bytes.Equal(body, data[100:chunk+100]) {
			t.Fatalf("GET range: status %d, %d bytes", resp.StatusCode, len(body))
		}
		// The range touches chunks 0 and 1: exactly those are read.
		settle(t, before, with(map[counter]float64{
			edge2Bytes: chunk, edge2206: 1,
			servedLocal: 2 * chunk, chunksLocal: 2,
		}))
		idle(t)
	})

	t.Run("hit ratio", func(t *testing.T) {
		local := metric(t, c.cacheOps, "p2pd_cachenode_chunks_served_total", map[string]string{"source": "local"})
		total := metric(t, c.cacheOps, "p2pd_cachenode_chunks_served_total", nil)
		if want := float64(chunks+2) / float64(2*chunks+2); total == 0 || local/total != want {
			t.Errorf("chunk hit ratio %v/%v, want %v", local, total, want)
		}
	})

	t.Run("tracker", func(t *testing.T) {
		if v := metric(t, c.trackerOps, "p2pd_tracker_nodes", nil); v != 3 {
			t.Errorf("p2pd_tracker_nodes = %v, want 3 (origin, cachenode and edge)", v)
		}
		if v := metric(t, c.trackerOps, "p2pd_tracker_files", nil); v != 1 {
			t.Errorf("p2pd_tracker_files = %v, want 1", v)
		}
		// Two registrations, a publication and holdings announcements went
		// to etcd, each timed.
		for _, op := range []string{"LeaseGrant", "Txn", "Range"} {
			if n := histCount(t, c.trackerOps, "p2pd_tracker_etcd_request_duration_seconds", map[string]string{"op": op}); n == 0 {
				t.Errorf("no etcd %s timed", op)
			}
		}
		if n := histCount(t, c.trackerOps, "p2pd_tracker_etcd_request_duration_seconds", map[string]string{"op": "LeaseGrant"}); n < 2 {
			t.Errorf("etcd LeaseGrant timed %d times, want at least the 2 registrations", n)
		}
	})

	t.Run("every service exposes its metrics", func(t *testing.T) {
		for ops, names := range map[string][]string{
			c.edgeOps: {"p2pd_edge_requests_total", "p2pd_edge_bytes_sent_total", "p2pd_edge_request_duration_seconds",
				"p2pd_edge_active_requests", "p2pd_edge_failovers_total", "p2pd_edge_memory_cache_hits_total"},
			c.cacheOps: {"p2pd_cachenode_bytes_served_total", "p2pd_cachenode_chunks_served_total", "p2pd_cachenode_fetched_bytes_total",
				"p2pd_cachenode_chunk_fetch_seconds", "p2pd_cachenode_digest_failures_total", "p2pd_cachenode_active_streams",
				"p2pd_cachenode_store_bytes", "p2pd_cachenode_evictions_total"},
			c.originOps: {"p2pd_origin_egress_bytes_total", "p2pd_origin_chunks_served_total", "p2pd_origin_digest_failures_total",
				"p2pd_origin_active_streams"},
			c.trackerOps: {"p2pd_tracker_nodes", "p2pd_tracker_files", "p2pd_tracker_holdings",
				"p2pd_tracker_etcd_request_duration_seconds"},
		} {
			fams := scrape(t, ops)
			for _, n := range names {
				if _, ok := fams[n]; !ok {
					t.Errorf("%s: no %s", ops, n)
				}
			}
		}
	})
}
