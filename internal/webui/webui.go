// Package webui holds p2pd's web pages: the operators' dashboard, served
// by the origin next to the admin API, and the viewers' player pages,
// served by edges. Everything is embedded in the binary and needs nothing
// from outside: no build step, no external scripts, fonts or styles.
package webui

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed dashboard
var dashboardFiles embed.FS

// Dashboard serves the dashboard's files. Mount it at /ui/ on the same
// listener as the admin API (/v1/), which its script calls with the admin
// token the operator gives it (typed in, or /ui/#token=TOKEN once).
func Dashboard() http.Handler {
	sub, _ := fs.Sub(dashboardFiles, "dashboard") // the directory is embedded: cannot fail
	files := http.StripPrefix("/ui/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// Everything comes from this origin; the page never runs inline
		// script, so an injected file name cannot run code either.
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
