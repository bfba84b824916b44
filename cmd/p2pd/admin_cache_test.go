package main

import (
	"os"
	"path/filepath"
	"testing"
)

// The waits and progress of prewarm and purge need a CDN behind the API:
// e2e/purge_test.go runs them against real processes. Here: what is
// refused, and with which exit code.
func TestAdminCLIPrewarmPurgeExitCodes(t *testing.T) {
	url, media := adminServer(t)
	env := map[string]string{"P2PD_ADMIN_SERVER": url, "P2PD_ADMIN_TOKEN": cliToken}
	os.WriteFile(filepath.Join(media, "a.mp4"), []byte("a video"), 0o644)
	if r := runCLI(t, env, "publish", "--remote", "a.mp4"); r.code != 0 {
		t.Fatalf("publish: %+v", r)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"prewarm without nodes", []string{"prewarm", "a.mp4"}, exitUsage},
		{"prewarm with --all and --nodes", []string{"prewarm", "a.mp4", "--all", "--nodes", "c1"}, exitUsage},
		{"prewarm with --nodes and --regions", []string{"prewarm", "a.mp4", "--nodes", "c1", "--regions", "eu"}, exitUsage},
		{"prewarm without a name", []string{"prewarm", "--all"}, exitUsage},
		{"prewarm, bad timeout", []string{"prewarm", "a.mp4", "--all", "--timeout", "soon"}, exitUsage},
		{"purge of two names", []string{"purge", "a.mp4", "b.mp4"}, exitUsage},
		{"prewarm, not published", []string{"prewarm", "b.mp4", "--all"}, exitNotFound},
		{"purge, not published", []string{"purge", "b.mp4"}, exitNotFound},
		{"prewarm, invalid name", []string{"prewarm", "../a.mp4", "--nodes", "c1"}, exitRefused},
		// This origin has no tracker, so no nodes to tell.
		{"prewarm, no tracker", []string{"prewarm", "a.mp4", "--all"}, exitUnavailable},
		{"purge, no tracker", []string{"purge", "a.mp4", "--no-wait"}, exitUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := runCLI(t, env, tc.args...); r.code != tc.code {
				t.Fatalf("exit %d, want %d: %+v", r.code, tc.code, r)
			}
		})
	}
}
