package chunkstore

import (
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// smallDisk mounts a tmpfs of size bytes on a new directory, or skips the
// test where mounting is not permitted (not root, no CAP_SYS_ADMIN).
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount a %s tmpfs to fill (needs root): %v", size, err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// TestDiskFullEvicts: a limit larger than the disk behaves as the disk's
// size — the store evicts least-recently-used chunks when a write finds
// the disk full, and every chunk it keeps still verifies.
func TestDiskFullEvicts(t *testing.T) {
	dir := smallDisk(t, "1m")
	s := open(t, dir, 64<<20)
	root := rootOf(1)
	const n, size = 48, 64 << 10 // 3 MiB through a 1 MiB disk
	for i := range n {
		put(t, s, root, i, chunk(1, i, size))
	}
	if s.Bytes() > 1<<20 || s.Evictions() == 0 {
		t.Fatalf("store holds %d bytes after %d evictions on a 1 MiB disk", s.Bytes(), s.Evictions())
	}
	if !s.Has(root, n-1) || s.Has(root, 0) {
		t.Fatal("the newest chunk was not kept, or the oldest not evicted")
	}
	for i := range n {
		if !s.Has(root, i) {
			continue
		}
		data := chunk(1, i, size)
		if _, err := s.Get(root, i, sha256.Sum256(data), nil); err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
	}
}

// TestDiskFullOfOtherFiles: when even an empty store leaves no room, Put
// fails with ENOSPC and the store is unchanged.
func TestDiskFullOfOtherFiles(t *testing.T) {
	dir := smallDisk(t, "1m")
	s := open(t, filepath.Join(dir, "store"), 64<<20)
	filler := make([]byte, 2<<20) // more than fits: the disk ends up full
	err := os.WriteFile(filepath.Join(dir, "filler"), filler, 0o644)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the disk: %v", err)
	}
	data := chunk(2, 0, 64<<10)
	if err := s.Put(rootOf(2), 0, data, sha256.Sum256(data)); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Put on a full disk: %v, want ENOSPC", err)
	}
	if s.Bytes() != 0 || s.Has(rootOf(2), 0) {
		t.Fatal("failed put indexed")
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "store", chunksDir, rootOf(2).String()))
	for _, e := range entries {
		t.Errorf("left behind: %s", e.Name())
	}
}
