package webui

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestPlayer(t *testing.T) {
	videos := []Video{
		{Name: "films/b movie.mp4", Size: 3 << 20, ContentType: "video/mp4"},
		{Name: "a.webm", Size: 10, ContentType: "video/webm"},
		{Name: "notes/<script>.txt", Size: 5, ContentType: "text/plain"},
		{Name: "song.mp3", Size: 5, ContentType: "audio/mpeg"},
	}
	list := func(context.Context) ([]Video, error) { return videos, nil }
	files := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "file "+r.RequestURI) })
	srv := httptest.NewServer(Player(list, files))
	defer srv.Close()

	for _, tc := range []struct {
		name, method, path string
		status             int
		want, absent       []string
	}{
		{"list", "GET", "/", 200,
			[]string{`<table id="videos">`, `<a class="watch" href="/?watch=a.webm">a.webm</a>`,
				`href="/?watch=films%2Fb&#43;movie.mp4"`, `<a href="/notes/%3Cscript%3E.txt">notes/&lt;script&gt;.txt</a>`, "3.0 MiB"},
			[]string{"<script>"}},
		{"list sorted", "GET", "/", 200, []string{"a.webm</a>"}, nil},
		{"watch", "GET", "/?watch=films/b+movie.mp4", 200,
			[]string{`<video id="player" controls preload="metadata" playsinline src="/films/b%20movie.mp4"></video>`, `<h1 id="title">films/b movie.mp4</h1>`},
			[]string{`<table`}},
		{"audio", "GET", "/?watch=song.mp3", 200, []string{`<audio id="player"`}, nil},
		{"watch unknown", "GET", "/?watch=nope.mp4", 404, []string{"no published video"}, nil},
		{"head", "HEAD", "/", 200, nil, nil},
		{"post", "POST", "/", 405, nil, nil},
		{"a file", "GET", "/a.webm", 200, []string{"file /a.webm"}, nil},
		{"a file named like the page", "GET", "/watch/x.mp4", 200, []string{"file /watch/x.mp4"}, nil},
		{"escaped path untouched", "GET", "/films/b%20movie.mp4", 200, []string{"file /films/b%20movie.mp4"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			body := string(b)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("body lacks %q:\n%s", w, body)
				}
			}
			for _, a := range tc.absent {
				if strings.Contains(body, a) {
					t.Errorf("body has %q:\n%s", a, body)
				}
			}
		})
	}
	if i, j := strings.Index(get(t, srv.URL+"/"), "a.webm"), strings.Index(get(t, srv.URL+"/"), "films/b movie.mp4"); i > j {
		t.Errorf("list not sorted by name")
	}
}

func TestPlayerListFails(t *testing.T) {
	h := PlayerHandler(func(context.Context) ([]Video, error) { return nil, errors.New("tracker down") })
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 503 || rec.Header().Get("Retry-After") == "" || strings.Contains(rec.Body.String(), "tracker down") {
		t.Fatalf("%d %v %q", rec.Code, rec.Header(), rec.Body)
	}
}

func TestDashboard(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("/ui/", Dashboard())
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, tc := range []struct {
		path, contentType, want string
	}{
		{"/ui/", "text/html", `<script src="app.js" defer></script>`},
		{"/ui/app.js", "text/javascript", "function renderDetail"},
		{"/ui/style.css", "text/css", ".cell"},
	} {
		resp, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.contentType) ||
			!strings.Contains(string(b), tc.want) || resp.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("%s: %d %v", tc.path, resp.StatusCode, resp.Header)
		}
	}
	if resp, _ := http.Get(srv.URL + "/ui/nope"); resp.StatusCode != 404 {
		t.Errorf("unknown asset: %d", resp.StatusCode)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
