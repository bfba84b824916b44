package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	long := strings.Repeat("p2pd_metric 1\n", 200) // past the 512 bytes read first
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/metrics":
			w.Write([]byte(long))
		default:
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	tests := []struct {
		path    string
		wantErr string
		want    string
	}{
		{path: "/metrics", want: long},
		{path: "/readyz", wantErr: "503 Service Unavailable: not ready"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			var out bytes.Buffer
			err := check(5*time.Second, srv.URL+tt.path, &out)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				if out.Len() != 0 {
					t.Errorf("a failed check printed %q", out.String())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.want {
				t.Errorf("printed %d bytes, want the whole body of %d", out.Len(), len(tt.want))
			}
		})
	}
}
