package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/services/origin/adminserver"
	"github.com/p2pd/p2pd/services/origin/originserver"
)

const cliToken = "cli-test-token"

// adminServer runs a real origin over a temporary media directory with
// the admin API in front of it on a real HTTP server. The origin has no
// tracker: the CLI's job is the API, not the CDN behind it.
func adminServer(t *testing.T) (url, media string) {
	t.Helper()
	media = t.TempDir()
	o, err := originserver.New(originserver.Config{MediaDir: media, ChunkSize: manifest.MinChunkSize, Advertise: "127.0.0.1:1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := adminserver.New(adminserver.Config{
		Token: cliToken, MediaDir: media, ChunkSize: manifest.MinChunkSize,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv.URL, media
}

// cliRun is one p2pd admin run's outcome.
type cliRun struct {
	stdout, stderr string
	code           int
	err            error
}

// runCLI runs p2pd admin with env as its environment.
func runCLI(t *testing.T, env map[string]string, args ...string) cliRun {
	t.Helper()
	var stdout, stderr bytes.Buffer
	a := &adminCLI{stdout: &stdout, stderr: &stderr, getenv: func(k string) string { return env[k] }, now: time.Now}
	err := a.run(context.Background(), args)
	return cliRun{stdout.String(), stderr.String(), adminExitCode(err), err}
}

func TestAdminCLIWorkflow(t *testing.T) {
	url, media := adminServer(t)
	env := map[string]string{"P2PD_ADMIN_SERVER": url, "P2PD_ADMIN_TOKEN": cliToken}
	local := filepath.Join(t.TempDir(), "movie.mp4")
	data := bytes.Repeat([]byte("p2pd"), 50000)
	os.WriteFile(local, data, 0o644)

	r := runCLI(t, env, "publish", local, "--name", "films/movie.mp4", "--progress=always")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "published films/movie.mp4: 195.3 KiB, 13 chunks, root ") {
		t.Fatalf("publish: %+v", r)
	}
	for _, want := range []string{"hashing films/movie.mp4 100% [========================] 195.3 KiB / 195.3 KiB", "uploading films/movie.mp4 100%"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("progress on stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if got, err := os.ReadFile(filepath.Join(media, "films", "movie.mp4")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("stored file: %d bytes, %v", len(got), err)
	}

	os.WriteFile(filepath.Join(media, "in place.webm"), []byte("already there"), 0o644)
	if r := runCLI(t, env, "publish", "--remote", "in place.webm"); r.code != 0 || !strings.HasPrefix(r.stdout, "published in place.webm: 13 B, 1 chunks") {
		t.Fatalf("publish --remote: %+v", r)
	}

	r = runCLI(t, env, "ls")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") ||
		!strings.HasPrefix(lines[1], "films/movie.mp4") || !strings.HasPrefix(lines[2], "in place.webm") {
		t.Fatalf("ls: %+v", r)
	}

	r = runCLI(t, env, "show", "films/movie.mp4")
	for _, want := range []string{"name:", "films/movie.mp4", "195.3 KiB (200000 bytes)", "13 of 16.0 KiB", "video/mp4", "NODE"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("show lacks %q:\n%s", want, r.stdout)
		}
	}

	r = runCLI(t, env, "--json", "show", "films/movie.mp4")
	var shown struct {
		File struct{ Name, Size, Root string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &shown); r.code != 0 || err != nil || shown.File.Name != "films/movie.mp4" || shown.File.Size != "200000" {
		t.Fatalf("show --json: %+v %v", r, err)
	}

	if r := runCLI(t, env, "rm", "films/movie.mp4"); r.code != 0 || r.stdout != "unpublished and deleted films/movie.mp4\n" {
		t.Fatalf("rm: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(media, "films", "movie.mp4")); !os.IsNotExist(err) {
		t.Fatalf("rm left the file: %v", err)
	}
	if r := runCLI(t, env, "rm", "--keep-file", "in place.webm"); r.code != 0 || !strings.Contains(r.stdout, "file kept") {
		t.Fatalf("rm --keep-file: %+v", r)
	}
	if r := runCLI(t, env, "ls", "--json"); r.code != 0 || strings.TrimSpace(r.stdout) != "{\n  \"files\": []\n}" {
		t.Fatalf("ls --json after rm: %+v", r)
	}
	for _, cmd := range []string{"nodes", "stats"} {
		if r := runCLI(t, env, cmd); r.code != 0 || r.stdout == "" {
			t.Fatalf("%s: %+v", cmd, r)
		}
	}
}

func TestAdminCLIExitCodes(t *testing.T) {
	url, media := adminServer(t)
	env := map[string]string{"P2PD_ADMIN_SERVER": url, "P2PD_ADMIN_TOKEN": cliToken}
	local := filepath.Join(t.TempDir(), "a.mp4")
	os.WriteFile(local, []byte("a video"), 0o644)
	os.WriteFile(filepath.Join(media, "dir-file"), nil, 0o644)
	os.Mkdir(filepath.Join(media, "dir"), 0o755)
	if r := runCLI(t, env, "publish", local); r.code != 0 {
		t.Fatalf("first publish: %+v", r)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()

	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		msg  string // in the error
	}{
		{"no command", env, nil, exitUsage, "no command"},
		{"unknown command", env, []string{"frobnicate"}, exitUsage, "unknown command"},
		{"unknown flag", env, []string{"ls", "--frob"}, exitUsage, "frob"},
		{"publish without file", env, []string{"publish"}, exitUsage, "one FILE"},
		{"show two names", env, []string{"show", "a", "b"}, exitUsage, "one NAME"},
		{"--name with --remote", env, []string{"publish", "--remote", "x", "--name", "y"}, exitUsage, "--remote"},
		{"bad server", env, []string{"--server", "ftp://x", "ls"}, exitUsage, "--server"},
		{"no token", map[string]string{"P2PD_ADMIN_SERVER": url}, []string{"ls"}, exitAuth, "no admin token"},
		{"wrong token", env, []string{"--token", "nope", "ls"}, exitAuth, "wrong admin token"},
		{"unreachable", env, []string{"--server", dead, "ls"}, exitUnavailable, "cannot reach"},
		{"show unknown", env, []string{"show", "nope.mp4"}, exitNotFound, "not published"},
		{"rm unknown", env, []string{"rm", "nope.mp4"}, exitNotFound, "not published"},
		{"remote missing", env, []string{"publish", "--remote", "nope.mp4"}, exitNotFound, "no file nope.mp4"},
		{"duplicate", env, []string{"publish", local}, exitConflict, "--replace"},
		{"remote escaping", env, []string{"publish", "--remote", "../x.mp4"}, exitRefused, "outside the media directory"},
		{"remote directory", env, []string{"publish", "--remote", "dir"}, exitRefused, "not a regular file"},
		{"hidden name", env, []string{"publish", local, "--name", ".x.mp4"}, exitRefused, "never published"},
		{"local file missing", env, []string{"publish", "/no/such/file.mp4"}, exitRefused, "no such file"},
		{"name under a file", env, []string{"publish", local, "--name", "dir-file/x.mp4"}, exitConflict, "in the way"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, tc.env, tc.args...)
			if r.code != tc.code || r.err == nil || !strings.Contains(r.err.Error(), tc.msg) {
				t.Fatalf("exit %d (%v), want %d with %q", r.code, r.err, tc.code, tc.msg)
			}
		})
	}

	t.Run("json error on stdout", func(t *testing.T) {
		r := runCLI(t, env, "show", "--json", "nope.mp4")
		var e struct{ Code, Message string }
		if err := json.Unmarshal([]byte(r.stdout), &e); err != nil || e.Code != "not_published" || r.code != exitNotFound {
			t.Fatalf("%+v: %v", r, err)
		}
	})
	t.Run("replace", func(t *testing.T) {
		os.WriteFile(local, []byte("a newer video"), 0o644)
		if r := runCLI(t, env, "publish", "--replace", local); r.code != 0 {
			t.Fatalf("%+v", r)
		}
		if got, _ := os.ReadFile(filepath.Join(media, "a.mp4")); string(got) != "a newer video" {
			t.Fatalf("stored %q", got)
		}
	})
	t.Run("token file", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "token")
		os.WriteFile(f, []byte(cliToken+"\n"), 0o600)
		if r := runCLI(t, map[string]string{}, "--server", url, "--token-file", f, "ls"); r.code != 0 {
			t.Fatalf("%+v", r)
		}
	})
}

func TestProgressLine(t *testing.T) {
	for _, tc := range []struct {
		name        string
		done, total int64
		elapsed     time.Duration
		final       bool
		want        string
	}{
		{"start", 0, 100 << 20, 0, false, "up   0% [>                       ] 0 B / 100.0 MiB  0 B/s  ETA --"},
		{"half", 50 << 20, 100 << 20, 5 * time.Second, false, "up  50% [============>           ] 50.0 MiB / 100.0 MiB  10.0 MiB/s  ETA 5s"},
		{"slow", 1 << 20, 101 << 20, 1 * time.Second, false, "up   1% [>                       ] 1.0 MiB / 101.0 MiB  1.0 MiB/s  ETA 1m40s"},
		{"done", 100 << 20, 100 << 20, 4 * time.Second, true, "up 100% [========================] 100.0 MiB / 100.0 MiB  25.0 MiB/s  in 4s"},
		{"empty file", 0, 0, time.Millisecond, true, "up 100% [========================] 0 B / 0 B  0 B/s  in 0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := progressLine("up", tc.done, tc.total, tc.elapsed, tc.final); got != tc.want {
				t.Fatalf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}
