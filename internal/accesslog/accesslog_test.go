package accesslog

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a log destination read after the server answered.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// content serves ranges through io.Copy (ReaderFrom on a real connection),
// and /abort cuts its response as the edge does.
var content = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Trace-Id", "4bf92f3577b34da6a3ce929d0e0e4736")
	if r.URL.Path == "/abort" {
		w.Header().Set("Content-Length", "100")
		w.Write([]byte("short"))
		panic(http.ErrAbortHandler)
	}
	http.ServeContent(w, r, "a.mp4", time.Unix(0, 0), strings.NewReader(strings.Repeat("x", 1000)))
})

// serve sends one request through a real server logging to buf, and
// returns the line logged.
func serve(t *testing.T, format Format, path string, hdr map[string]string) string {
	t.Helper()
	buf := &syncBuffer{}
	srv := httptest.NewServer(New(buf, format).Handler(content))
	req, _ := http.NewRequest("GET", srv.URL+path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	srv.Close() // waits for the handler, and so for its line
	return buf.String()
}

func TestCombined(t *testing.T) {
	tests := []struct {
		path string
		hdr  map[string]string
		want string // a regexp for the whole line
	}{
		{"/a.mp4?x=1", map[string]string{"Range": "bytes=0-99", "Referer": "https://player.example/", "User-Agent": `évil"agent`},
			`^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET /a\.mp4\?x=1 HTTP/1\.1" 206 100 "https://player\.example/" "\\xC3\\xA9vil\\"agent" "bytes=0-99" \d+\.\d{6} 4bf92f3577b34da6a3ce929d0e0e4736\n$`},
		{"/a.mp4", map[string]string{"User-Agent": "curl/8"},
			`^127\.0\.0\.1 - - \[.*\] "GET /a\.mp4 HTTP/1\.1" 200 1000 "-" "curl/8" "-" \d+\.\d{6} 4bf92f3577b34da6a3ce929d0e0e4736\n$`},
		{"/a.mp4", map[string]string{"If-None-Match": "*"},
			`^127\.0\.0\.1 .* "GET /a\.mp4 HTTP/1\.1" 304 - `},
		{"/abort", nil, `^127\.0\.0\.1 .* "GET /abort HTTP/1\.1" 200 5 `},
	}
	for _, tc := range tests {
		line := serve(t, Combined, tc.path, tc.hdr)
		if !regexp.MustCompile(tc.want).MatchString(line) {
			t.Errorf("GET %s logged\n%q\nwant %s", tc.path, line, tc.want)
		}
	}
}

func TestJSON(t *testing.T) {
	line := serve(t, JSON, "/a.mp4", map[string]string{"Range": "bytes=10-19", "User-Agent": "hls.js", "Referer": "https://p.example/"})
	if strings.Count(line, "\n") != 1 {
		t.Fatalf("want one line, got %q", line)
	}
	var rec Record
	if err := json.Unmarshal([]byte(line), &rec); err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	want := Record{Time: rec.Time, Client: "127.0.0.1", Method: "GET", Path: "/a.mp4", Proto: "HTTP/1.1", Range: "bytes=10-19",
		Status: 206, Bytes: 10, Duration: rec.Duration, Referer: "https://p.example/", UserAgent: "hls.js", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736"}
	if rec != want || rec.Time.IsZero() || rec.Duration < 0 {
		t.Fatalf("logged %+v\nwant %+v", rec, want)
	}
}

func TestOpen(t *testing.T) {
	if l, err := Open("", Combined); l != nil || err != nil {
		t.Fatalf("no destination: %v, %v", l, err)
	}
	var l *Logger
	if h := l.Handler(content); h == nil || l.Close() != nil {
		t.Fatal("a nil Logger must pass requests through")
	}
	path := filepath.Join(t.TempDir(), "access.log")
	if err := os.WriteFile(path, []byte("earlier\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := Flags{Dest: path, Format: "json"}
	l, err := f.Open()
	if err != nil {
		t.Fatal(err)
	}
	l.write(Record{Method: "GET", Status: 200})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if lines := strings.Split(strings.TrimSpace(string(got)), "\n"); len(lines) != 2 || lines[0] != "earlier" || !strings.HasPrefix(lines[1], "{") {
		t.Fatalf("file holds %q: want the earlier line, then a JSON line", got)
	}
	for _, bad := range []Flags{{Dest: path, Format: "apache"}, {Dest: filepath.Join(t.TempDir(), "no", "such", "dir"), Format: "combined"}} {
		if _, err := bad.Open(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
