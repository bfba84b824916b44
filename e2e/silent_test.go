package e2e

import (
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestP2PDSilentManifestHolder: the one cache that holds a file (and its
// manifest) is frozen with SIGSTOP — still registered, its port accepting
// connections, answering nothing — when a new cache's first viewer asks
// for the file. The new cache moves past the silent holder (its manifest
// fetch asks the next source after a short wait; its chunk fetches give
// up on a stalled stream) to the server, and the viewer gets every byte:
// never a 502.
func TestP2PDSilentManifestHolder(t *testing.T) {
	media := t.TempDir()
	data := randomFile(t, media, "held.mp4", 6<<20+17)
	hosts := []string{"127.0.0.65", "127.0.0.66", "127.0.0.67"}
	port := samePort(t, hosts...)
	server := startP2PD(t, "server", hosts[0], port, "-i", "-p", media)
	serverAddr := net.JoinHostPort(hosts[0], port)
	holder := startP2PD(t, "holder", hosts[1], port, "-c", t.TempDir(), "-n", "-N", "-S", serverAddr)
	waitP2PDServes(t, holder.url("held.mp4"), "")
	if resp, body := viewerGet(t, holder.url("held.mp4"), "", nil); resp.StatusCode != 200 || sum(body) != sum(data) {
		t.Fatalf("through the holder: %d, byte-exact %v", resp.StatusCode, sum(body) == sum(data))
	}
	fresh := startP2PD(t, "fresh", hosts[2], port, "-c", t.TempDir(), "-n", "-N", "-S", serverAddr)
	eventually(t, 30*time.Second, "the tracker has the origin and both caches", func() error {
		if n := metric(t, server.ops(), "p2pd_tracker_nodes", nil); n < 3 {
			return fmt.Errorf("%v nodes", n)
		}
		return nil
	})

	// Freeze the holder within its lease: the tracker still names it.
	if err := holder.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.cmd.Process.Signal(syscall.SIGCONT) })
	start := time.Now()
	resp, body := viewerGet(t, fresh.url("held.mp4"), "", nil)
	took := time.Since(start)
	if resp.StatusCode != 200 || sum(body) != sum(data) {
		t.Fatalf("through a new cache with the holder silent: status %d, %d bytes, byte-exact %v", resp.StatusCode, len(body), sum(body) == sum(data))
	}
	t.Logf("whole file through the new cache with its holder silent in %v", took.Round(time.Millisecond))
	// A range request as a player seeking would send: also served.
	resp, body = viewerGet(t, fresh.url("held.mp4"), "", map[string]string{"Range": "bytes=5000000-5000099"})
	if resp.StatusCode != 206 || string(body) != string(data[5000000:5000100]) {
		t.Fatalf("range through the new cache: %d", resp.StatusCode)
	}
}
