package service

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// pprofPrefix is where the ops listener serves the Go profiler.
const pprofPrefix = "/debug/pprof/"

// guardPprof lets /debug/pprof/ requests through only with "Authorization:
// Bearer token"; with no token pprof is refused outright. A profile can
// stall the process for seconds and a heap dump shows its memory: not for
// whoever reaches a non-loopback ops port. Everything else (metrics,
// health, the admin API with its own token check) passes unchanged.
func guardPprof(token string, h http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, pprofPrefix) {
			h.ServeHTTP(w, r)
			return
		}
		if token == "" {
			http.Error(w, "403 forbidden: pprof on an ops listener off loopback needs the admin token (--admin-token-file or P2PD_ADMIN_TOKEN)", http.StatusForbidden)
			return
		}
		scheme, got, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="p2pd-ops"`)
			http.Error(w, "401 unauthorized: pprof off loopback needs \"Authorization: Bearer ADMIN_TOKEN\"", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}
