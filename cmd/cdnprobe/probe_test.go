package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// flaky serves content but cuts every full-body response after cut bytes,
// like an edge that dies mid-stream.
type flaky struct {
	content []byte
	cut     int
}

func (f flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Range") != "" {
		http.Error(w, "flaky edge only fails", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(f.content)))
	w.Header().Set("ETag", `"v1"`)
	w.Write(f.content[:f.cut])
	panic(http.ErrAbortHandler)
}

func serve(content []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/f" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("ETag", `"v1"`)
		http.ServeContent(w, r, "f", time.Time{}, bytes.NewReader(content))
	})
}

func TestProbe(t *testing.T) {
	content := make([]byte, 3<<20)
	rand.Read(content)
	s := sha256.Sum256(content)
	want := hex.EncodeToString(s[:])

	good := httptest.NewServer(serve(content))
	defer good.Close()
	bad := httptest.NewServer(flaky{content: content, cut: 1 << 20})
	defer bad.Close()
	down := httptest.NewServer(http.NotFoundHandler())
	downAddr := strings.TrimPrefix(down.URL, "http://")
	down.Close() // connection refused from now on

	tests := []struct {
		name    string
		addrs   []string
		target  Target
		n       int
		wantOK  bool
		retries bool
	}{
		{"one good edge", []string{good.Listener.Addr().String()}, Target{"/f", want}, 3, true, false},
		{"mid-stream cut resumes elsewhere", []string{good.Listener.Addr().String(), bad.Listener.Addr().String()}, Target{"/f", want}, 4, true, true},
		{"refused address skipped", []string{good.Listener.Addr().String(), downAddr}, Target{"/f", ""}, 4, true, true},
		{"wrong digest fails", []string{good.Listener.Addr().String()}, Target{"/f", strings.Repeat("0", 64)}, 1, false, false},
		{"404 is final", []string{good.Listener.Addr().String()}, Target{"/missing", ""}, 1, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Host: "cdn", Port: 8080, Targets: []Target{tc.target}, N: tc.n, C: 2,
				Attempts: 10, Timeout: 30 * time.Second, Stall: 5 * time.Second}
			p := newProber(cfg, slog.New(slog.DiscardHandler))
			p.lookup = func(context.Context) ([]string, error) { return append([]string(nil), tc.addrs...), nil }
			rep := p.Run(context.Background())
			if tc.name == "404 is final" {
				if rep.OK || rep.Statuses["404"] != 1 || rep.Retries != 0 {
					t.Fatalf("404: %+v", rep)
				}
				return
			}
			if rep.OK != tc.wantOK {
				t.Fatalf("ok = %v, want %v: %+v", rep.OK, tc.wantOK, rep)
			}
			if tc.wantOK && rep.Digests["/f"] != want {
				t.Fatalf("digest %s, want %s", rep.Digests["/f"], want)
			}
			if tc.retries && rep.Retries == 0 {
				t.Fatalf("expected retries: %+v", rep)
			}
			if len(rep.PerAddr) != len(tc.addrs) && tc.wantOK {
				t.Fatalf("per address %v, want every one of %v used", rep.PerAddr, tc.addrs)
			}
		})
	}
}

func TestCopyBodyStall(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	r := blockingReader{ctx: ctx}
	start := time.Now()
	_, _, err := copyBody(ctx, &bytes.Buffer{}, r, 100*time.Millisecond, 0, func() { cancel(errStalled) })
	if err == nil || !strings.Contains(err.Error(), "stalled") || time.Since(start) > 5*time.Second {
		t.Fatalf("err = %v after %v", err, time.Since(start))
	}
}

type blockingReader struct{ ctx context.Context }

func (b blockingReader) Read([]byte) (int, error) {
	<-b.ctx.Done()
	return 0, b.ctx.Err()
}
