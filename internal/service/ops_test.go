package service

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestGuardPprof(t *testing.T) {
	ops := NewOps()
	tests := []struct {
		token, path, auth string
		want              int
	}{
		{"s3cret", "/debug/pprof/", "Bearer s3cret", 200},
		{"s3cret", "/debug/pprof/", "bearer s3cret", 200},
		{"s3cret", "/debug/pprof/", "", 401},
		{"s3cret", "/debug/pprof/cmdline", "Bearer wrong", 401},
		{"", "/debug/pprof/", "Bearer ", 403},
		{"", "/debug/pprof/heap", "", 403},
		{"", "/metrics", "", 200},
		{"", "/healthz", "", 200},
	}
	for _, tc := range tests {
		req := httptest.NewRequest("GET", tc.path, nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		rec := httptest.NewRecorder()
		guardPprof(tc.token, ops.Mux).ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("token %q, GET %s with %q: %d, want %d", tc.token, tc.path, tc.auth, rec.Code, tc.want)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for _, tc := range []struct {
		ip   string
		want bool
	}{{"127.0.0.1", true}, {"127.0.0.12", true}, {"::1", true}, {"0.0.0.0", false}, {"::", false}, {"10.1.2.3", false}} {
		if got := isLoopback(tc.ip); got != tc.want {
			t.Errorf("isLoopback(%s) = %v", tc.ip, got)
		}
	}
}

// A port already taken costs the ops listener, never the process: ServeOps
// waits for the end like a listener would and returns no error.
func TestServeOpsPortTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- ServeOps(ctx, l.Addr().String(), NewOps()) }()
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("ServeOps on a taken port: %v", err)
	}
}

func TestBuildInfoMetric(t *testing.T) {
	ops := NewOps()
	rec := httptest.NewRecorder()
	ops.Mux.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "p2pd_build_info{") {
		t.Fatalf("/metrics: %d, no p2pd_build_info", rec.Code)
	}
}
