package e2e

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCommandLine runs the binaries as people type them: --version,
// --help, a bad flag, and combined short flags.
func TestCommandLine(t *testing.T) {
	tests := []struct {
		bin    string
		args   []string
		code   int
		stdout string // in stdout
		stderr string // how stderr starts
	}{
		{"p2pd", []string{"--version"}, 0, "p2pd " + e2eVersion + " (revision ", ""},
		{"edge", []string{"--version"}, 0, "edge " + e2eVersion, ""},
		{"tracker", []string{"-version"}, 0, "tracker " + e2eVersion, ""},
		{"p2pd", []string{"--help"}, 0, "-n, --fetch", ""},
		{"cachenode", []string{"--help"}, 0, "  --cache-dir string", ""},
		{"p2pd", []string{"-nX"}, 2, "", "p2pd: flag provided but not defined: -nX (see p2pd --help)\n"},
		// -nN parses: what is missing is a mode.
		{"p2pd", []string{"-nN"}, 2, "", "p2pd: give -p DIR (server) or -c DIR -S SERVER (cache) (see p2pd --help)\n"},
		{"p2pd", []string{"-inN", "-c", "/tmp/x"}, 2, "", "p2pd: a cache needs -S HOST[:PORT]"},
		{"origin", []string{"--media-dir", "/m"}, 2, "", "origin: --media-dir and --tracker are required (see origin --help)\n"},
		{"edge", []string{"--tracker", "t:1", "--access-log-format", "xml"}, 2, "", "edge: --access-log-format: access log format \"xml\": want combined or json (see edge --help)\n"},
		{"edge", []string{"--tracker", "t:1", "--cors-origins", "example.com"}, 2, "", ""},
	}
	for _, tc := range tests {
		cmd := exec.Command(filepath.Join(binDir, tc.bin), tc.args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		oneLine := tc.code != 2 || (strings.Count(stderr.String(), "\n") == 1 && strings.HasSuffix(stderr.String(), " (see "+tc.bin+" --help)\n"))
		if code != tc.code || !strings.Contains(stdout.String(), tc.stdout) || !strings.HasPrefix(stderr.String(), tc.stderr) || !oneLine {
			t.Errorf("%s %q: exit %d, stdout %.200q, stderr %q; want %d, %q, %q",
				tc.bin, tc.args, code, stdout.String(), stderr.String(), tc.code, tc.stdout, tc.stderr)
		}
	}
}

// TestP2PDTwoNodesOneMachine starts two servers on one machine with
// different -P and no -B (their ops listeners default to -P + 1010 on
// loopback, so they do not collide), and a third whose ops port is taken:
// it warns and serves viewers anyway. The second writes an access log.
func TestP2PDTwoNodesOneMachine(t *testing.T) {
	media := t.TempDir()
	data := randomFile(t, media, "a.mp4", 3<<20+5)
	portA := samePort(t, "0.0.0.0")
	portB := portA
	for portB == portA {
		portB = samePort(t, "0.0.0.0")
	}
	accessLog := filepath.Join(t.TempDir(), "access.log")
	a := &p2pdNode{proc: start(t, "server-a", "p2pd", "-p", media, "-P", portA), host: "127.0.0.1", port: portA}
	b := &p2pdNode{proc: start(t, "server-b", "p2pd", "-p", media, "-P", portB, "--access-log", accessLog, "--access-log-format", "combined"),
		host: "127.0.0.1", port: portB}
	for _, n := range []*p2pdNode{a, b} {
		waitReady(t, n.ops())
		waitP2PDServes(t, n.url("a.mp4"), "")
		resp, body := viewerGet(t, n.url("a.mp4"), "", map[string]string{"Range": "bytes=1000-1999"})
		if resp.StatusCode != 206 || !bytes.Equal(body, data[1000:2000]) {
			t.Fatalf("%s: %d, bytes equal %v", n.name, resp.StatusCode, bytes.Equal(body, data[1000:2000]))
		}
		if v := metric(t, n.ops(), "p2pd_build_info", map[string]string{"version": e2eVersion}); v != 1 {
			t.Fatalf("%s: p2pd_build_info{version=%q} = %v", n.name, e2eVersion, v)
		}
	}

	// The access log has the request above, with its range and trace id.
	req, _ := http.NewRequest("GET", b.url("a.mp4"), nil)
	req.Header.Set("Range", "bytes=0-99")
	req.Header.Set("User-Agent", "e2e-player/1")
	req.Header.Set("Referer", "https://player.example/watch")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	trace := resp.Header.Get("X-Trace-Id")
	eventually(t, 10*time.Second, "the access log line", func() error {
		log, err := os.ReadFile(accessLog)
		if err != nil {
			return err
		}
		want := `"GET /a.mp4 HTTP/1.1" 206 100 "https://player.example/watch" "e2e-player/1" "bytes=0-99" `
		for _, line := range strings.Split(string(log), "\n") {
			if strings.HasPrefix(line, "127.0.0.1 - - [") && strings.Contains(line, want) && strings.HasSuffix(line, " "+trace) && trace != "" {
				return nil
			}
		}
		return errors.New("no line with " + want + " and trace " + trace + " in:\n" + string(log))
	})

	// A node whose ops port is taken (by a's) still serves viewers.
	portC := portA
	for portC == portA || portC == portB {
		portC = samePort(t, "0.0.0.0")
	}
	c := &p2pdNode{proc: start(t, "server-c", "p2pd", "-p", media, "-P", portC, "--ops", a.ops()), host: "127.0.0.1", port: portC}
	waitP2PDServes(t, c.url("a.mp4"), "")
	if l, err := os.ReadFile(c.log); err != nil || !strings.Contains(string(l), "ops listener disabled") {
		t.Fatalf("server-c did not warn about its ops port: %v\n%s", err, l)
	}
	if _, err := net.Dial("tcp", a.ops()); err != nil {
		t.Fatalf("server-a's ops listener: %v", err)
	}
}
