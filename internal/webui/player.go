package webui

import (
	"context"
	"embed"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/flagenv"
	"google.golang.org/grpc"
)

// Video is a published file as the player pages show it.
type Video struct {
	Name        string
	Size        int64
	ContentType string
}

// ListFunc lists the published files.
type ListFunc func(ctx context.Context) ([]Video, error)

// FileLister is the tracker call TrackerVideos needs; trackerclient.Client
// satisfies it.
type FileLister interface {
	ListFiles(ctx context.Context, in *trackerv1.ListFilesRequest, opts ...grpc.CallOption) (*trackerv1.ListFilesResponse, error)
}

// TrackerVideos lists the files the tracker knows as published.
func TrackerVideos(t FileLister) ListFunc {
	return func(ctx context.Context) ([]Video, error) {
		resp, err := t.ListFiles(ctx, &trackerv1.ListFilesRequest{})
		if err != nil {
			return nil, fmt.Errorf("list files: %w", err)
		}
		vs := make([]Video, 0, len(resp.Files))
		for _, f := range resp.Files {
			vs = append(vs, Video{Name: f.Name, Size: int64(f.Size), ContentType: f.ContentType})
		}
		return vs, nil
	}
}

//go:embed player.html
var playerFiles embed.FS

var playerTmpl = template.Must(template.New("player.html").Funcs(template.FuncMap{
	"href":     fileHref,
	"watch":    watchHref,
	"size":     humanBytes,
	"playable": playable,
	"audio":    func(ct string) bool { return strings.HasPrefix(ct, "audio/") },
}).ParseFS(playerFiles, "player.html"))

// Player serves the viewers' pages at "/" and hands every other request to
// files (the edge) untouched:
//
//	/             the published files, each playable one linking to its player
//	/?watch=NAME  a player page: an HTML5 <video> streaming /NAME from this edge
//
// The player lives under "/" with a query, not under a path of its own,
// so that it can never hide a published file: every other path is a file
// name.
func Player(list ListFunc, files http.Handler) http.Handler {
	p := PlayerHandler(list)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			files.ServeHTTP(w, r)
			return
		}
		p.ServeHTTP(w, r)
	})
}

// PlayerHandler serves the pages of Player for requests to "/" only.
func PlayerHandler(list ListFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; media-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		videos, err := list(r.Context())
		if err != nil {
			slog.Default().WarnContext(r.Context(), "player page: list files", "err", err)
			h.Set("Retry-After", "1")
			http.Error(w, "503 service unavailable: the list of videos cannot be fetched, retry shortly", http.StatusServiceUnavailable)
			return
		}
		slices.SortFunc(videos, func(a, b Video) int { return strings.Compare(a.Name, b.Name) })
		data := struct {
			Videos []Video
			Watch  *Video
		}{Videos: videos}
		if name, ok := r.URL.Query()["watch"]; ok {
			i := slices.IndexFunc(videos, func(v Video) bool { return v.Name == name[0] })
			if i < 0 {
				http.Error(w, "404 not found: no published video "+name[0], http.StatusNotFound)
				return
			}
			data.Watch = &videos[i]
		}
		h.Set("Content-Type", "text/html; charset=utf-8")
		if err := playerTmpl.Execute(w, data); err != nil {
			slog.Default().WarnContext(r.Context(), "player page", "err", err)
		}
	})
}

// fileHref is the edge URL path of a published name.
func fileHref(name string) string {
	segs := strings.Split(name, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return "/" + strings.Join(segs, "/")
}

// watchHref is the player page URL of a published name.
func watchHref(name string) string { return "/?" + url.Values{"watch": {name}}.Encode() }

// playable reports content a browser's <video> or <audio> may play.
func playable(ct string) bool {
	return strings.HasPrefix(ct, "video/") || strings.HasPrefix(ct, "audio/") || ct == "application/vnd.apple.mpegurl"
}

func humanBytes(n int64) string { return flagenv.HumanBytes(uint64(max(n, 0))) }
