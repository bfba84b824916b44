package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// adminCDN is the four services as separate processes, each on its own
// loopback address, with the origin's admin API enabled on its ops
// listener.
type adminCDN struct {
	tracker, origin, cache, edge             *proc
	trackerAddr                              string
	edgeURL, adminURL                        string
	trackerOps, originOps, cacheOps, edgeOps string
	media, token                             string
}

// startAdminCDN starts tracker, origin (serving media, admin API on),
// cachenode and edge. originArgs are added to the origin's flags.
func startAdminCDN(t *testing.T, media string, originArgs ...string) *adminCDN {
	t.Helper()
	c := &adminCDN{media: media, token: "e2e-admin-" + fmt.Sprint(time.Now().UnixNano())}
	tokenFile := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(tokenFile, []byte(c.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.trackerAddr = freeAddr(t, "127.0.0.2")
	c.trackerOps = freeAddr(t, "127.0.0.2")
	c.tracker = start(t, "tracker", "tracker", "--listen", c.trackerAddr,
		"--embedded-etcd", t.TempDir(), "--etcd-client-addr", freeAddr(t, "127.0.0.2"),
		"--etcd-peer-addr", freeAddr(t, "127.0.0.2"), "--ops", c.trackerOps)
	waitReady(t, c.trackerOps)

	c.originOps = freeAddr(t, "127.0.0.3")
	c.adminURL = "http://" + c.originOps
	args := append([]string{"--listen", freeAddr(t, "127.0.0.3"), "--tracker", c.trackerAddr,
		"--media-dir", media, "--ops", c.originOps, "--admin-token-file", tokenFile}, originArgs...)
	c.origin = start(t, "origin", "origin", args...)
	c.cacheOps = freeAddr(t, "127.0.0.4")
	c.cache = start(t, "cachenode", "cachenode", "--listen", freeAddr(t, "127.0.0.4"),
		"--tracker", c.trackerAddr, "--cache-dir", t.TempDir(), "--ops", c.cacheOps)
	edgeAddr := freeAddr(t, "127.0.0.5")
	c.edgeOps = freeAddr(t, "127.0.0.5")
	c.edge = start(t, "edge", "edge", "--listen", edgeAddr, "--tracker", c.trackerAddr, "--ops", c.edgeOps)
	c.edgeURL = "http://" + edgeAddr
	for _, ops := range []string{c.originOps, c.cacheOps, c.edgeOps} {
		waitReady(t, ops)
	}
	return c
}

// admin calls the admin API with the token and returns status and body.
func (c *adminCDN) admin(t *testing.T, method, path string, body io.Reader, hdr ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, c.adminURL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, path, err)
	}
	return resp.StatusCode, b
}

// upload PUTs data as name with its digest and fails the test unless it
// is published.
func (c *adminCDN) upload(t *testing.T, name string, data []byte) {
	t.Helper()
	sum := sha256.Sum256(data)
	code, body := c.admin(t, "PUT", "/v1/files/"+name, bytes.NewReader(data),
		"Repr-Digest", "sha-256=:"+base64.StdEncoding.EncodeToString(sum[:])+":")
	if code != http.StatusCreated {
		t.Fatalf("upload %s: %d %s", name, code, body)
	}
}

// edgeStatus is the edge's status for HEAD name.
func (c *adminCDN) edgeStatus(name string) (int, error) {
	resp, err := http.Head(c.edgeURL + "/" + name)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// waitEdge waits until the edge answers HEAD name with status.
func (c *adminCDN) waitEdge(t *testing.T, name string, status int) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("edge answers %d for %s", status, name), func() error {
		got, err := c.edgeStatus(name)
		if err != nil {
			return err
		}
		if got != status {
			return fmt.Errorf("status %d", got)
		}
		return nil
	})
}

// uploadLeftovers lists upload files in progress (or left behind) in the
// media directory.
func uploadLeftovers(media string) []string {
	var out []string
	filepath.WalkDir(media, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".upload-") {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// p2pdAdmin runs the p2pd binary's admin command against c and returns
// its stdout, stderr and exit code.
func (c *adminCDN) p2pdAdmin(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "p2pd"), append([]string{"admin"}, args...)...)
	cmd.Env = append(cleanEnv(), "P2PD_ADMIN_SERVER="+c.adminURL, "P2PD_ADMIN_TOKEN="+c.token)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("p2pd admin %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), code
}
