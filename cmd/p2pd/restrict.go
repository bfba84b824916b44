package main

import (
	"net"
	"net/http"
	"strings"
)

// loopbackOnly serves loopback clients only: without -N a node is not
// public (the scenario-3 server that only caches and the operator reach).
func loopbackOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			http.Error(w, "403 forbidden: this node serves loopback clients only (start it with -N to serve everyone)", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// hostOnly serves requests whose Host (port ignored) is host, as -A does;
// others get 404 and never content.
func hostOnly(host string, h http.Handler) http.Handler {
	want := strings.ToLower(strings.TrimSuffix(host, "."))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Host
		if hp, _, err := net.SplitHostPort(got); err == nil {
			got = hp
		}
		got = strings.ToLower(strings.TrimSuffix(strings.Trim(got, "[]"), "."))
		if got != want {
			http.Error(w, "404 not found: unknown host", http.StatusNotFound)
			return
		}
		h.ServeHTTP(w, r)
	})
}
