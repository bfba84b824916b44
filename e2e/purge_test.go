package e2e

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	adminv1 "github.com/p2pd/p2pd/gen/admin/v1"
	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// TestPrewarmPurgeDelete runs the separate services (tracker, origin
// with the admin API, three cachenodes, an edge) and drives them with the
// p2pd admin binary: a prewarm fills every cachenode while the origin
// sends the file about once; a purge leaves no chunk on any node, disk or
// memory (an SPP fetch misses), and the next viewer is served byte-exact
// from a fresh fetch; after a DELETE no cachenode serves the file from
// memory, without waiting for the sweeps.
func TestPrewarmPurgeDelete(t *testing.T) {
	media := t.TempDir()
	const name = "films/release.mp4"
	const size = 6<<20 + 4321
	data := randomFile(t, media, name, size)
	c := startAdminCDN(t, media, "--chunk-size", "262144")
	caches := []string{c.cacheOps}
	for i := range 2 {
		host := fmt.Sprintf("127.0.0.%d", 6+i)
		ops := freeAddr(t, host)
		start(t, fmt.Sprintf("cachenode%d", i+2), "cachenode", "--listen", freeAddr(t, host),
			"--tracker", c.trackerAddr, "--cache-dir", t.TempDir(), "--ops", ops)
		waitReady(t, ops)
		caches = append(caches, ops)
	}
	var cachenodes []*adminv1.Node
	eventually(t, 30*time.Second, "three cachenodes and the file listed", func() error {
		cachenodes = nil
		for _, n := range c.nodes(t).Nodes {
			if n.Role == "cachenode" {
				cachenodes = append(cachenodes, n)
			}
		}
		if len(cachenodes) != 3 {
			return fmt.Errorf("%d cachenodes", len(cachenodes))
		}
		if code, body := c.admin(t, "GET", "/v1/files/"+name, nil); code != 200 {
			return fmt.Errorf("file: %d %s", code, body)
		}
		return nil
	})
	f := c.file(t, name).File
	root, _ := hex.DecodeString(f.Root)
	egress := func() float64 { return metric(t, c.originOps, "p2pd_origin_egress_bytes_total", nil) }

	t.Run("prewarm", func(t *testing.T) {
		before := egress()
		stdout, stderr, code := c.p2pdAdmin(t, "prewarm", name, "--all", "--progress=always", "--timeout=2m")
		if code != 0 || !strings.Contains(stdout, "prewarmed "+name+": every chunk on 3 cachenodes") {
			t.Fatalf("p2pd admin prewarm: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
		}
		if !strings.Contains(stderr, "prewarm "+name+" 100%") {
			t.Errorf("no progress on stderr:\n%s", stderr)
		}
		held := map[string]uint32{}
		for _, h := range c.file(t, name).Holders {
			held[h.NodeId] = h.Chunks
		}
		for _, n := range cachenodes {
			if held[n.Id] != f.ChunkCount {
				t.Errorf("%s holds %d of %d chunks", n.Id, held[n.Id], f.ChunkCount)
			}
			for i := range f.ChunkCount {
				if err := sppFetch(n.GrpcAddr, root, i); err != nil {
					t.Fatalf("%s does not serve chunk %d from what it holds: %v", n.Id, i, err)
				}
			}
		}
		sent := egress() - before
		t.Logf("prewarm of a %d-byte file on 3 cachenodes: origin egress %.0f bytes (%.2fx)", size, sent, sent/size)
		if sent < size || sent > 1.1*size {
			t.Fatalf("origin egress %.0f bytes for a %d-byte file on 3 cachenodes; want 1x to 1.1x", sent, size)
		}
		// Viewers are served from the caches: the origin sends nothing.
		before = egress()
		c.getExact(t, name, data)
		if sent := egress() - before; sent != 0 {
			t.Errorf("a viewer of a prewarmed file cost %.0f bytes of origin egress", sent)
		}
	})

	t.Run("purge", func(t *testing.T) {
		if metric(t, c.edgeOps, "p2pd_edge_memory_cache_bytes", nil) == 0 {
			t.Fatal("the edge holds nothing in memory before the purge: the test would prove nothing")
		}
		stdout, stderr, code := c.p2pdAdmin(t, "purge", name, "--progress=always")
		if code != 0 || !strings.Contains(stdout, "purged "+name+": no cachenode holds a chunk of it") {
			t.Fatalf("p2pd admin purge: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
		}
		for _, h := range c.file(t, name).Holders {
			if h.Role == "cachenode" {
				t.Errorf("%s still holds %d chunks", h.NodeId, h.Chunks)
			}
		}
		for _, n := range cachenodes {
			for _, i := range []uint32{0, f.ChunkCount - 1} {
				if err := sppFetch(n.GrpcAddr, root, i); status.Code(err) != codes.NotFound {
					t.Errorf("%s chunk %d after the purge: %v, want NotFound", n.Id, i, err)
				}
			}
		}
		memory := append([]string{c.edgeOps}, caches...)
		eventually(t, 10*time.Second, "no chunk in any memory cache", func() error {
			for _, ops := range memory {
				gauge := "p2pd_cachenode_memory_cache_bytes"
				if ops == c.edgeOps {
					gauge = "p2pd_edge_memory_cache_bytes"
				}
				if b := metric(t, ops, gauge, nil); b != 0 {
					return fmt.Errorf("%s: %s = %.0f", ops, gauge, b)
				}
			}
			return nil
		})
		// The next viewer gets exact bytes, fetched anew from the origin.
		before := egress()
		c.getExact(t, name, data)
		if sent := egress() - before; sent < size {
			t.Errorf("after the purge the origin sent %.0f bytes for a %d-byte file; want it fetched anew", sent, size)
		}
	})

	t.Run("delete", func(t *testing.T) {
		// The last GET left the file on the cachenodes that served it.
		serving := 0
		for _, n := range cachenodes {
			if sppFetch(n.GrpcAddr, root, 0) == nil {
				serving++
			}
		}
		if serving == 0 {
			t.Fatal("no cachenode serves chunk 0 before the DELETE: the test would prove nothing")
		}
		if code, body := c.admin(t, "DELETE", "/v1/files/"+name+"?keepFile=true", nil); code != 200 {
			t.Fatalf("DELETE: %d %s", code, body)
		}
		// Well within the two sweeps (15 s apart) that drop it otherwise.
		eventually(t, 10*time.Second, "no cachenode serves the unpublished file", func() error {
			for _, n := range cachenodes {
				if err := sppFetch(n.GrpcAddr, root, 0); status.Code(err) != codes.NotFound {
					return fmt.Errorf("%s: %v", n.Id, err)
				}
			}
			return nil
		})
		c.waitEdge(t, name, http.StatusNotFound)
	})
}

// nodes is GET /v1/nodes.
func (c *adminCDN) nodes(t *testing.T) *adminv1.ListNodesResponse {
	t.Helper()
	var out adminv1.ListNodesResponse
	c.adminJSON(t, "/v1/nodes", &out)
	return &out
}

// file is GET /v1/files/NAME.
func (c *adminCDN) file(t *testing.T, name string) *adminv1.GetFileResponse {
	t.Helper()
	var out adminv1.GetFileResponse
	c.adminJSON(t, "/v1/files/"+name, &out)
	return &out
}

// adminJSON GETs path from the admin API and decodes the answer.
func (c *adminCDN) adminJSON(t *testing.T, path string, out proto.Message) {
	t.Helper()
	code, body := c.admin(t, "GET", path, nil)
	if code != 200 {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, out); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, body)
	}
}

// getExact GETs name from the edge and fails unless it is data.
func (c *adminCDN) getExact(t *testing.T, name string, data []byte) {
	t.Helper()
	resp, body := get(t, "GET", c.edgeURL+"/"+name, nil)
	if resp.StatusCode != 200 || sum(body) != sum(data) {
		t.Fatalf("edge GET %s: %d, %d bytes, same %v", name, resp.StatusCode, len(body), sum(body) == sum(data))
	}
}

// sppFetch asks the node at addr for chunk idx of root over SPP, as a
// peer does (local_only: what it holds, never fetched for the asker).
func sppFetch(addr string, root []byte, idx uint32) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := sppv1.NewChunkServiceClient(cc).Fetch(ctx, &sppv1.FetchRequest{Root: root, Chunks: []uint32{idx}, LocalOnly: true, Requester: "e2e"})
	if err != nil {
		return err
	}
	_, err = st.Recv()
	return err
}

// TestP2PDPrewarmPurge is prewarm and purge in scenario 3 of the single
// binary: a p2pd server and three p2pd caches, driven by p2pd admin.
func TestP2PDPrewarmPurge(t *testing.T) {
	media := t.TempDir()
	const name = "release.mp4"
	const size = 5<<20 + 777
	data := randomFile(t, media, name, size)
	hosts := []string{"127.0.0.60", "127.0.0.61", "127.0.0.62", "127.0.0.63"}
	port := samePort(t, hosts...)
	c := &adminCDN{token: "e2e-p2pd-" + fmt.Sprint(time.Now().UnixNano())}
	tokenFile := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(tokenFile, []byte(c.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	server := startP2PD(t, "server", hosts[0], port, "-i", "-p", media, "--admin-token-file", tokenFile)
	c.adminURL = "http://" + server.ops()
	serverAddr := net.JoinHostPort(hosts[0], port)
	var caches []*p2pdNode
	for i, h := range hosts[1:] {
		caches = append(caches, startP2PD(t, fmt.Sprintf("cache%d", i), h, port, "-c", t.TempDir(), "-n", "-N", "-S", serverAddr))
	}
	eventually(t, 30*time.Second, "three caches and the file listed", func() error {
		n := 0
		for _, nd := range c.nodes(t).Nodes {
			if nd.Role == "cachenode" {
				n++
			}
		}
		if n != 3 {
			return fmt.Errorf("%d cachenodes", n)
		}
		if code, body := c.admin(t, "GET", "/v1/files/"+name, nil); code != 200 {
			return fmt.Errorf("file: %d %s", code, body)
		}
		return nil
	})
	egress := func() float64 { return metric(t, server.ops(), "p2pd_origin_egress_bytes_total", nil) }
	getExact := func(n *p2pdNode) {
		t.Helper()
		resp, body := get(t, "GET", n.url(name), nil)
		if resp.StatusCode != 200 || sum(body) != sum(data) {
			t.Fatalf("GET from %s: %d, %d bytes, same %v", n.name, resp.StatusCode, len(body), sum(body) == sum(data))
		}
	}

	before := egress()
	if stdout, stderr, code := c.p2pdAdmin(t, "prewarm", name, "--all", "--timeout=2m"); code != 0 {
		t.Fatalf("prewarm: exit %d\n%s\n%s", code, stdout, stderr)
	}
	f := c.file(t, name)
	cached := 0
	for _, h := range f.Holders {
		if h.Role == "cachenode" && h.Chunks == f.File.ChunkCount {
			cached++
		}
	}
	sent := egress() - before
	t.Logf("prewarm of a %d-byte file on 3 p2pd caches: origin egress %.0f bytes (%.2fx)", size, sent, sent/size)
	if cached != 3 || sent > 1.1*size {
		t.Fatalf("after prewarm: %d caches hold every chunk, origin egress %.0f for %d bytes", cached, sent, size)
	}
	before = egress()
	for _, n := range caches {
		getExact(n)
	}
	if d := egress() - before; d != 0 {
		t.Errorf("viewers of a prewarmed file cost %.0f bytes of origin egress", d)
	}

	if stdout, stderr, code := c.p2pdAdmin(t, "purge", name); code != 0 {
		t.Fatalf("purge: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, n := range caches {
		if b := metric(t, n.ops(), "p2pd_cachenode_memory_cache_bytes", nil); b != 0 {
			t.Errorf("%s keeps %.0f bytes in memory after the purge", n.name, b)
		}
	}
	before = egress()
	getExact(caches[0])
	if d := egress() - before; d < size {
		t.Errorf("after the purge the origin sent %.0f bytes for a %d-byte file; want it fetched anew", d, size)
	}
}
