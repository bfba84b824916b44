package adminserver

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/services/tracker/trackerclient"
	"github.com/p2pd/p2pd/services/tracker/trackertest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// opsListener serves a registry's /metrics on loopback, as a node's ops
// listener does, and returns its address.
func opsListener(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// counters registers the counters GetStats reads, as the services name
// them, and sets them; egress < 0 leaves the origin's out (a registry
// holding a real origin's already has it).
func counters(reg *prometheus.Registry, egress, edgeSent float64, served map[string]float64) {
	e := prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricEdgeSent, Help: "test"}, []string{"status"})
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricCacheServed, Help: "test"}, []string{"source"})
	reg.MustRegister(e, c)
	if egress >= 0 {
		o := prometheus.NewCounter(prometheus.CounterOpts{Name: metricOriginEgress, Help: "test"})
		reg.MustRegister(o)
		o.Add(egress)
	}
	e.WithLabelValues("206").Add(edgeSent)
	for src, v := range served {
		c.WithLabelValues(src).Add(v)
	}
}

func TestStatsClusterWide(t *testing.T) {
	e := newEnv(t)
	// The admin API's own process: its origin (which sent nothing yet)
	// and a cachenode.
	counters(e.reg, -1, 0, map[string]float64{"local": 200})
	// Two cachenodes and an edge, each with an ops listener of its own.
	cacheA, cacheB, edge := prometheus.NewRegistry(), prometheus.NewRegistry(), prometheus.NewRegistry()
	counters(cacheA, 0, 0, map[string]float64{"local": 300, "origin": 100})
	// cache-b runs in one process with another origin.
	counters(cacheB, 1000, 0, map[string]float64{"local": 500, "peer": 100})
	counters(edge, 0, 4000, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()

	shared := opsListener(t, cacheB)
	nodes := []*trackerv1.Node{
		{Id: "cache-a", Role: trackerv1.Role_ROLE_CACHENODE, GrpcAddr: "127.0.0.1:7201", OpsAddr: opsListener(t, cacheA)},
		// Two nodes of one process share its ops listener: read once.
		{Id: "cache-b", Role: trackerv1.Role_ROLE_CACHENODE, GrpcAddr: "127.0.0.1:7202", OpsAddr: shared},
		{Id: "origin-b", Role: trackerv1.Role_ROLE_ORIGIN, GrpcAddr: "127.0.0.1:7102", OpsAddr: shared},
		{Id: "edge-1", Role: trackerv1.Role_ROLE_EDGE, HttpAddr: "127.0.0.1:8080", OpsAddr: opsListener(t, edge)},
		{Id: "cache-gone", Role: trackerv1.Role_ROLE_CACHENODE, GrpcAddr: "127.0.0.1:7203", OpsAddr: dead},
		// The admin API's own ops address is read from its registry.
		{Id: "cache-self", Role: trackerv1.Role_ROLE_CACHENODE, GrpcAddr: "127.0.0.1:7204", OpsAddr: "127.0.0.1:1"},
	}
	for _, n := range nodes {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		m := e.tracker.JoinWith(ctx, n, nil, trackerclient.Config{Logger: quiet()})
		t.Cleanup(m.Close)
	}
	e.admin.cfg.OpsAddr = "127.0.0.1:1"

	var s struct {
		NodesByRole         map[string]int    `json:"nodesByRole"`
		OriginEgressBytes   string            `json:"originEgressBytes"`
		EdgeBytesSent       string            `json:"edgeBytesSent"`
		BytesServedBySource map[string]string `json:"bytesServedBySource"`
		HitRatio            float64           `json:"hitRatio"`
		MetricsSources      int               `json:"metricsSources"`
		MetricsMissing      []string          `json:"metricsMissing"`
	}
	trackertest.EventuallyOK(t, "every node registered", func() error {
		if code, ae := e.doJSON("GET", "/v1/stats", nil, &s); code != 200 {
			return fmt.Errorf("%d %+v", code, ae)
		}
		if s.NodesByRole["cachenode"] != 4 || s.NodesByRole["edge"] != 1 || s.NodesByRole["origin"] != 2 {
			return fmt.Errorf("stats %+v", s)
		}
		return nil
	})
	want := map[string]string{"local": "1000", "origin": "100", "peer": "100"}
	if s.OriginEgressBytes != "1000" || s.EdgeBytesSent != "4000" || !maps.Equal(s.BytesServedBySource, want) ||
		s.HitRatio != 1000.0/1200 || s.MetricsSources != 4 || !slices.Equal(s.MetricsMissing, []string{"cache-gone"}) {
		t.Fatalf("stats %+v", s)
	}

	// The edge is listed among the nodes with its ops address.
	var list struct{ Nodes []jsonNode }
	if code, ae := e.doJSON("GET", "/v1/nodes", nil, &list); code != 200 {
		t.Fatalf("nodes: %d %+v", code, ae)
	}
	i := slices.IndexFunc(list.Nodes, func(n jsonNode) bool { return n.ID == "edge-1" })
	if i < 0 || list.Nodes[i].Role != "edge" || list.Nodes[i].OpsAddr != nodes[3].OpsAddr {
		t.Fatalf("nodes %+v", list.Nodes)
	}
}
