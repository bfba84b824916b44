// Package e2e runs p2pd as a user would: built binaries started as separate
// processes on loopback addresses, talked to over real HTTP and gRPC.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	promtext "github.com/p2pd/p2pd/internal/metric"
)

// e2eVersion is the version the test binaries are built with.
const e2eVersion = "v0.0.0-e2e"

// binDir holds the binaries built once by TestMain.
var binDir string

func TestMain(m *testing.M) {
	code, err := buildAndRun(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func buildAndRun(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "p2pd-e2e-bin")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	// Stamped as the Makefile stamps a build, so tests can see the version.
	cmd := exec.Command("go", "build", "-ldflags", "-X github.com/p2pd/p2pd/internal/buildinfo.version="+e2eVersion, "-o", dir+string(os.PathSeparator),
		"../services/tracker", "../services/origin", "../services/cachenode", "../services/edge", "../cmd/p2pd")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("build binaries: %v\n%s", err, out)
	}
	binDir = dir
	return m.Run(), nil
}

// proc is a p2pd process started by a test.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// e2eOriginToken is the origin credential of the services the tests
// start.
const e2eOriginToken = "e2e-origin-credential"

// cleanEnv is the test's environment without the P2PD_* variables an
// operator's shell (or make) may hold: every binary reads them as flags,
// and a test's processes must run with the flags the test gives alone.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "P2PD_") || strings.HasPrefix(kv, "P2PD_E2E_") {
			env = append(env, kv)
		}
	}
	return env
}

// start runs a built binary with args; it is killed when the test ends and
// its log is printed if the test failed.
func start(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	return startExe(t, name, filepath.Join(binDir, bin), args...)
}

// startExe is start for any executable.
func startExe(t *testing.T, name, exe string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Trackers and origins share the origin credential (the tracker lets
	// only its holder publish); no other process needs it.
	cmd.Env = append(cleanEnv(), "P2PD_ORIGIN_TOKEN="+e2eOriginToken)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(syscall.SIGTERM)
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("---- %s log ----\n%s", name, tail(b, 60))
		}
	})
	return p
}

func tail(b []byte, lines int) []byte {
	ls := bytes.Split(b, []byte("\n"))
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return bytes.Join(ls, []byte("\n"))
}

// stop signals the process and waits (bounded) for it to exit.
func (p *proc) stop(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// kill SIGKILLs the process.
func (p *proc) kill() { p.stop(syscall.SIGKILL) }

// freeAddr returns host:port with a port free on host right now.
func freeAddr(t *testing.T, host string) string {
	t.Helper()
	l, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Fatalf("listen on %s: %v", host, err)
	}
	defer l.Close()
	return l.Addr().String()
}

// eventually polls f until it returns nil or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitReady waits for an ops listener's /readyz.
func waitReady(t *testing.T, ops string) {
	t.Helper()
	eventually(t, 30*time.Second, "ready "+ops, func() error {
		resp, err := http.Get("http://" + ops + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
}

// metric returns the sum of a metric's samples whose labels include want.
func metric(t *testing.T, ops, name string, want map[string]string) float64 {
	t.Helper()
	return metricVia(t, http.DefaultClient, ops, name, want)
}

// metricVia is metric scraped with client.
func metricVia(t *testing.T, client *http.Client, ops, name string, want map[string]string) float64 {
	t.Helper()
	resp, err := client.Get("http://" + ops + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", ops, err)
	}
	defer resp.Body.Close()
	v, err := promtext.SumText(resp.Body, name, want)
	if err != nil {
		t.Fatalf("parse metrics of %s: %v", ops, err)
	}
	return v
}

// randomFile writes size random bytes to dir/name and returns them.
func randomFile(t *testing.T, dir, name string, size int) []byte {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	p := filepath.Join(dir, filepath.FromSlash(name))
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return data
}

// get performs a request with headers and returns the response and body.
func get(t *testing.T, method, url string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if strings.EqualFold(k, "Host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, url, err)
	}
	return resp, body
}

// rawGet sends a request line exactly as given (no client-side path
// cleaning) and returns the status code and body.
func rawGet(t *testing.T, addr, target string) (int, []byte) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", target, addr)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("raw GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func sum(b []byte) [32]byte { return sha256.Sum256(b) }
