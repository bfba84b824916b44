package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAdmin publishes, lists, shows and unpublishes through the origin's
// admin REST API and the p2pd admin CLI, and checks what viewers see on
// the edge.
func TestAdmin(t *testing.T) {
	media := t.TempDir()
	c := startAdminCDN(t, media, "--chunk-size", "262144")

	t.Run("auth", func(t *testing.T) {
		for _, auth := range []string{"", "Bearer wrong"} {
			code, body := c.admin(t, "GET", "/v1/files", nil, "Authorization", auth)
			if code != 401 || !bytes.Contains(body, []byte(`"code":"unauthenticated"`)) {
				t.Fatalf("Authorization %q: %d %s", auth, code, body)
			}
		}
	})

	uploaded := randomBytes(3<<20 + 12345)
	t.Run("upload", func(t *testing.T) {
		c.upload(t, "films/up.mp4", uploaded)
		c.waitEdge(t, "films/up.mp4", 200)
		resp, body := get(t, "GET", c.edgeURL+"/films/up.mp4", nil)
		if resp.StatusCode != 200 || sum(body) != sum(uploaded) {
			t.Fatalf("edge GET: %d, %d bytes, same %v", resp.StatusCode, len(body), sum(body) == sum(uploaded))
		}
	})

	t.Run("publish in place", func(t *testing.T) {
		data := randomFile(t, media, "local/in-place.webm", 700<<10)
		code, body := c.admin(t, "POST", "/v1/files", strings.NewReader(`{"path": "local/in-place.webm"}`))
		if code != 200 {
			t.Fatalf("publish: %d %s", code, body)
		}
		c.waitEdge(t, "local/in-place.webm", 200)
		if resp, body := get(t, "GET", c.edgeURL+"/local/in-place.webm", nil); sum(body) != sum(data) {
			t.Fatalf("edge GET: %d", resp.StatusCode)
		}
		code, body = c.admin(t, "POST", "/v1/files", strings.NewReader(`{"path": "local/in-place.webm"}`))
		if code != 409 || !bytes.Contains(body, []byte("already_published")) {
			t.Fatalf("publish again: %d %s", code, body)
		}
	})

	t.Run("list and show", func(t *testing.T) {
		code, body := c.admin(t, "GET", "/v1/files", nil)
		if code != 200 || !bytes.Contains(body, []byte(`"name":"films/up.mp4"`)) || !bytes.Contains(body, []byte(`"name":"local/in-place.webm"`)) {
			t.Fatalf("ls: %d %s", code, body)
		}
		// The edge's GET went through the cachenode, which now holds the
		// file: the holders show it beside the origin.
		eventually(t, 30*time.Second, "cachenode listed as holder", func() error {
			var d struct {
				File    struct{ ChunkCount int }
				Holders []struct {
					NodeID string `json:"nodeId"`
					Role   string
					Chunks int
				}
			}
			code, body := c.admin(t, "GET", "/v1/files/films/up.mp4", nil)
			if err := json.Unmarshal(body, &d); code != 200 || err != nil {
				return fmt.Errorf("%d %s", code, body)
			}
			roles := map[string]int{}
			for _, h := range d.Holders {
				roles[h.Role] = h.Chunks
			}
			if d.File.ChunkCount != 13 || roles["origin"] != 13 || roles["cachenode"] != 13 {
				return fmt.Errorf("holders %+v of %d chunks", d.Holders, d.File.ChunkCount)
			}
			return nil
		})
		code, body = c.admin(t, "GET", "/v1/nodes", nil)
		for _, role := range []string{"origin", "cachenode"} {
			if code != 200 || !bytes.Contains(body, []byte(`"role":"`+role+`"`)) {
				t.Fatalf("nodes: %d %s", code, body)
			}
		}
		// Every node says which build it runs (a rolling upgrade shows).
		var nodes struct {
			Nodes []struct{ Id, Version string }
		}
		if err := json.Unmarshal(body, &nodes); err != nil || len(nodes.Nodes) == 0 {
			t.Fatalf("nodes: %v %s", err, body)
		}
		for _, n := range nodes.Nodes {
			if n.Version != e2eVersion {
				t.Errorf("node %s reports version %q, want %q", n.Id, n.Version, e2eVersion)
			}
		}
		code, body = c.admin(t, "GET", "/v1/stats", nil)
		var s struct{ OriginEgressBytes string }
		if json.Unmarshal(body, &s); code != 200 || s.OriginEgressBytes == "0" {
			t.Fatalf("stats: %d %s", code, body)
		}
	})

	t.Run("upload cut off", func(t *testing.T) {
		conn, err := net.Dial("tcp", c.originOps)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "PUT /v1/files/films/cut.mp4 HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n",
			c.originOps, c.token, 4<<20)
		conn.Write(make([]byte, 1<<20))
		eventually(t, 30*time.Second, "upload under way", func() error {
			if len(uploadLeftovers(media)) == 0 {
				return fmt.Errorf("no upload file yet")
			}
			return nil
		})
		conn.Close()
		eventually(t, 30*time.Second, "upload file removed", func() error {
			if l := uploadLeftovers(media); len(l) > 0 {
				return fmt.Errorf("left: %v", l)
			}
			return nil
		})
		if _, err := os.Stat(filepath.Join(media, "films", "cut.mp4")); !os.IsNotExist(err) {
			t.Fatalf("cut-off upload stored: %v", err)
		}
		if code, body := c.admin(t, "GET", "/v1/files/films/cut.mp4", nil); code != 404 {
			t.Fatalf("show cut-off upload: %d %s", code, body)
		}
		if code, _ := c.edgeStatus("films/cut.mp4"); code != 404 {
			t.Fatalf("edge has the cut-off upload: %d", code)
		}
	})

	t.Run("cli", func(t *testing.T) {
		local := filepath.Join(t.TempDir(), "cli.mp4")
		data := randomBytes(1 << 20)
		os.WriteFile(local, data, 0o644)
		stdout, stderr, code := c.p2pdAdmin(t, "publish", local, "--name", "cli/movie.mp4")
		if code != 0 || !strings.HasPrefix(stdout, "published cli/movie.mp4: 1.0 MiB, 4 chunks") {
			t.Fatalf("publish: exit %d\n%s\n%s", code, stdout, stderr)
		}
		c.waitEdge(t, "cli/movie.mp4", 200)
		if _, body := get(t, "GET", c.edgeURL+"/cli/movie.mp4", nil); sum(body) != sum(data) {
			t.Fatal("edge serves other bytes than the CLI uploaded")
		}
		for _, tc := range []struct {
			args []string
			code int
			out  string
		}{
			{[]string{"ls"}, 0, "cli/movie.mp4"},
			{[]string{"show", "cli/movie.mp4", "--json"}, 0, `"name": "cli/movie.mp4"`},
			{[]string{"nodes"}, 0, "cachenode"},
			{[]string{"stats"}, 0, "origin egress:"},
			{[]string{"publish", local, "--name", "cli/movie.mp4"}, 4, ""},
			{[]string{"show", "nope.mp4"}, 3, ""},
			{[]string{"--token", "wrong", "ls"}, 5, ""},
			{[]string{"publish", "--remote", "../etc/passwd"}, 7, ""},
		} {
			stdout, stderr, code := c.p2pdAdmin(t, tc.args...)
			if code != tc.code || !strings.Contains(stdout, tc.out) {
				t.Errorf("p2pd admin %v: exit %d, want %d\n%s\n%s", tc.args, code, tc.code, stdout, stderr)
			}
		}
	})

	t.Run("unpublish", func(t *testing.T) {
		for _, name := range []string{"films/up.mp4", "cli/movie.mp4"} {
			if code, body := c.admin(t, "DELETE", "/v1/files/"+name, nil); code != 200 {
				t.Fatalf("delete %s: %d %s", name, code, body)
			}
			c.waitEdge(t, name, 404)
			if _, err := os.Stat(filepath.Join(media, filepath.FromSlash(name))); !os.IsNotExist(err) {
				t.Fatalf("%s still in the media directory: %v", name, err)
			}
		}
		if code, body := c.admin(t, "DELETE", "/v1/files/films/up.mp4", nil); code != 404 || !bytes.Contains(body, []byte("not_published")) {
			t.Fatalf("delete again: %d %s", code, body)
		}
		if _, _, code := c.p2pdAdmin(t, "rm", "films/up.mp4"); code != 3 {
			t.Fatalf("p2pd admin rm of an unpublished file: exit %d", code)
		}
	})

	t.Run("openapi", func(t *testing.T) {
		resp, body := get(t, "GET", c.adminURL+"/v1/openapi.json", nil)
		var spec struct{ Paths map[string]map[string]any }
		if err := json.Unmarshal(body, &spec); resp.StatusCode != 200 || err != nil {
			t.Fatalf("spec: %d %v", resp.StatusCode, err)
		}
		for _, p := range []string{"/v1/files", "/v1/files/{name}", "/v1/nodes", "/v1/stats", "/v1/traces/{traceId}", "/v1/prewarm", "/v1/purge"} {
			if spec.Paths[p] == nil {
				t.Errorf("spec has no %s; it has %d paths", p, len(spec.Paths))
			}
		}
	})
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
