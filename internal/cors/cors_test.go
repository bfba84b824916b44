package cors

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// content serves a file with ranges and validators, as the edge does.
var content = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("ETag", `"v1"`)
	w.Header().Set("X-Trace-Id", "4bf92f3577b34da6a3ce929d0e0e4736")
	http.ServeContent(w, r, "a.mp4", time.Unix(0, 0), strings.NewReader("0123456789"))
})

func TestHandler(t *testing.T) {
	tests := []struct {
		name    string
		origins string
		method  string
		hdr     map[string]string
		status  int
		want    map[string]string // "" = header absent
		body    string
	}{
		{
			name: "range from any origin", origins: "*", method: "GET",
			hdr:    map[string]string{"Origin": "https://player.example", "Range": "bytes=2-4"},
			status: 206, body: "234",
			want: map[string]string{"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": exposeHeaders, "Vary": "", "Content-Range": "bytes 2-4/10"},
		},
		{
			name: "no Origin, no CORS headers", origins: "*", method: "GET", status: 200, body: "0123456789",
			want: map[string]string{"Access-Control-Allow-Origin": ""},
		},
		{
			name: "preflight for Range", origins: "*", method: "OPTIONS",
			hdr:    map[string]string{"Origin": "https://player.example", "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "range"},
			status: 204,
			want: map[string]string{"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": allowMethods,
				"Access-Control-Allow-Headers": allowHeaders, "Access-Control-Max-Age": maxAge},
		},
		{
			name: "plain OPTIONS", origins: "*", method: "OPTIONS", status: 204,
			want: map[string]string{"Allow": allowMethods, "Access-Control-Allow-Origin": ""},
		},
		{
			name: "listed origin echoed", origins: "https://a.example, http://localhost:3000", method: "GET",
			hdr:    map[string]string{"Origin": "http://localhost:3000"},
			status: 200, body: "0123456789",
			want: map[string]string{"Access-Control-Allow-Origin": "http://localhost:3000", "Vary": "Origin"},
		},
		{
			name: "unlisted origin gets content, no CORS", origins: "https://a.example", method: "GET",
			hdr:    map[string]string{"Origin": "https://evil.example"},
			status: 200, body: "0123456789",
			want: map[string]string{"Access-Control-Allow-Origin": "", "Vary": "Origin"},
		},
		{
			name: "unlisted origin's preflight refused", origins: "https://a.example", method: "OPTIONS",
			hdr:    map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
			status: 403,
			want:   map[string]string{"Access-Control-Allow-Origin": ""},
		},
		{
			name: "disabled", origins: "", method: "GET",
			hdr:    map[string]string{"Origin": "https://player.example"},
			status: 200, body: "0123456789",
			want: map[string]string{"Access-Control-Allow-Origin": ""},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := Flags{Origins: tc.origins}
			h, err := f.Handler(content)
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest(tc.method, "/a.mp4", nil)
			for k, v := range tc.hdr {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.status || (tc.body != "" && rec.Body.String() != tc.body) {
				t.Fatalf("%d %q, want %d %q", rec.Code, rec.Body.String(), tc.status, tc.body)
			}
			for k, v := range tc.want {
				if got := strings.Join(rec.Header().Values(k), ", "); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestParse(t *testing.T) {
	for _, bad := range []string{"example.com", "ftp://a.example", "https://a.example/path", "https://", "https://u@a.example"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	for _, good := range []string{"*", "https://a.example", "http://127.0.0.1:8080, https://B.example/"} {
		if p, err := Parse(good); err != nil || p == nil {
			t.Errorf("Parse(%q): %v, %v", good, p, err)
		}
	}
	if p, err := Parse("https://B.example/"); err != nil || !p.allows("https://b.example") {
		t.Errorf("origins are compared without case: %v", err)
	}
}
