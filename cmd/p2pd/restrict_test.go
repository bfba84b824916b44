package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestRestrict(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("content")) })
	for _, tc := range []struct {
		name    string
		public  bool
		host    string
		remote  string
		reqHost string
		want    int
	}{
		{"loopback v4 allowed", false, "", "127.0.0.1:4000", "x", 200},
		{"loopback v6 allowed", false, "", "[::1]:4000", "x", 200},
		{"other loopback address allowed", false, "", "127.0.0.42:4000", "x", 200},
		{"remote refused without -N", false, "", "192.0.2.7:4000", "x", 403},
		{"remote allowed with -N", true, "", "192.0.2.7:4000", "x", 200},
		{"-A match", true, "cdn.example.com", "192.0.2.7:1", "cdn.example.com", 200},
		{"-A match ignores port and case", true, "cdn.example.com", "192.0.2.7:1", "CDN.Example.com:8080", 200},
		{"-A match with trailing dot", true, "cdn.example.com", "192.0.2.7:1", "cdn.example.com.", 200},
		{"-A mismatch", true, "cdn.example.com", "192.0.2.7:1", "other.example.com", 404},
		{"-A suffix trick", true, "cdn.example.com", "192.0.2.7:1", "cdn.example.com.evil", 404},
		{"-A empty Host", true, "cdn.example.com", "192.0.2.7:1", "", 404},
		{"both, remote refused first", false, "cdn.example.com", "192.0.2.7:1", "cdn.example.com", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := &node{cfg: &config{public: tc.public, host: tc.host}}
			r := httptest.NewRequest("GET", "/a.mp4", nil)
			r.RemoteAddr, r.Host = tc.remote, tc.reqHost
			w := httptest.NewRecorder()
			n.restrict(ok).ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d", w.Code, tc.want)
			}
			if tc.want != 200 && w.Body.String() == "content" {
				t.Fatal("content served")
			}
		})
	}
}
