// Package cors lets web pages on other origins read the viewers' HTTP:
// a player page served from the content provider's own site (hls.js,
// dash.js, Shaka, any fetch or XHR with Range) needs
// Access-Control-Allow-Origin on every response, the headers it reads
// exposed, and its preflight OPTIONS answered. A <video src> needs none
// of this; script does.
package cors

import (
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Headers a page may send (beyond the CORS-safelisted ones): ranges,
// conditional requests, and the W3C trace context a player may join.
const allowHeaders = "Range, If-Range, If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since, traceparent, tracestate"

// Response headers script may read: a player needs the range it got, the
// total size and the validator to resume with.
const exposeHeaders = "Content-Range, Content-Length, Accept-Ranges, ETag, X-Trace-Id"

const allowMethods = "GET, HEAD, OPTIONS"

// maxAge is how long (seconds) a browser may reuse a preflight's answer,
// so seeking does not cost a preflight per Range request.
const maxAge = "86400"

// Policy is the set of origins allowed to read responses.
type Policy struct {
	any     bool
	origins map[string]bool
}

// Parse reads a comma-separated list of origins ("https://www.example.com,
// http://localhost:3000"), or "*" for any origin (public content). An
// empty list yields a nil Policy: no CORS headers at all.
func Parse(list string) (*Policy, error) {
	p := &Policy{origins: map[string]bool{}}
	for _, o := range strings.Split(list, ",") {
		o = strings.TrimSpace(o)
		switch {
		case o == "":
			continue
		case o == "*":
			p.any = true
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return nil, fmt.Errorf("CORS origin %q: want * or scheme://host[:port], e.g. https://www.example.com", o)
		}
		p.origins[strings.ToLower(u.Scheme+"://"+u.Host)] = true
	}
	if !p.any && len(p.origins) == 0 {
		return nil, nil
	}
	return p, nil
}

// allows reports whether a page from origin may read responses.
func (p *Policy) allows(origin string) bool {
	return p.any || p.origins[strings.ToLower(origin)]
}

// Handler answers preflights and adds CORS headers to h's responses for
// allowed origins. A nil Policy returns h unchanged.
func (p *Policy) Handler(h http.Handler) http.Handler {
	if p == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		hdr := w.Header()
		if !p.any {
			// The answer depends on the Origin: shared caches must key on it.
			hdr.Add("Vary", "Origin")
		}
		if r.Method == http.MethodOptions {
			p.options(w, r, origin)
			return
		}
		if origin != "" && p.allows(origin) {
			hdr.Set("Access-Control-Allow-Origin", p.allowOrigin(origin))
			hdr.Set("Access-Control-Expose-Headers", exposeHeaders)
		}
		h.ServeHTTP(w, r)
	})
}

// options answers OPTIONS: a browser's preflight (Origin and
// Access-Control-Request-Method) with what it may send, or a plain OPTIONS
// with the methods served. Neither reaches the content handler.
func (p *Policy) options(w http.ResponseWriter, r *http.Request, origin string) {
	hdr := w.Header()
	if origin == "" || r.Header.Get("Access-Control-Request-Method") == "" {
		hdr.Set("Allow", allowMethods)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	hdr.Add("Vary", "Access-Control-Request-Method")
	hdr.Add("Vary", "Access-Control-Request-Headers")
	if !p.allows(origin) {
		http.Error(w, "403 forbidden: origin not allowed (--cors-origins)", http.StatusForbidden)
		return
	}
	hdr.Set("Access-Control-Allow-Origin", p.allowOrigin(origin))
	hdr.Set("Access-Control-Allow-Methods", allowMethods)
	hdr.Set("Access-Control-Allow-Headers", allowHeaders)
	hdr.Set("Access-Control-Max-Age", maxAge)
	w.WriteHeader(http.StatusNoContent)
}

func (p *Policy) allowOrigin(origin string) string {
	if p.any {
		return "*"
	}
	return origin
}

// Flags is the command-line setting of the policy.
type Flags struct{ Origins string }

// Register adds --cors-origins to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.Origins, "cors-origins", "*", "origins whose web pages may read content with fetch/XHR (CORS): * for any, or a comma-separated `list` of scheme://host[:port]; empty sends no CORS headers")
}

// Validate checks the flag's value, for a usage error before anything
// starts.
func (f *Flags) Validate() error {
	if _, err := Parse(f.Origins); err != nil {
		return fmt.Errorf("--cors-origins: %w", err)
	}
	return nil
}

// Handler wraps h in the policy the flags name.
func (f *Flags) Handler(h http.Handler) (http.Handler, error) {
	p, err := Parse(f.Origins)
	if err != nil {
		return nil, fmt.Errorf("--cors-origins: %w", err)
	}
	return p.Handler(h), nil
}
