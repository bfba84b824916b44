package manifest

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestBuildSparseFile: holes are hashed as the zeros they read as, so a
// sparse file gets the same manifest as its bytes, without reading them.
func TestBuildSparseFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sparse.mkv")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	const chunk = 1 << 20
	// Holes, data straddling chunks, a hole, data at the end, a partial last chunk.
	if _, err := f.WriteAt(bytes.Repeat([]byte("data"), chunk/2), 5*chunk+chunk/2); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("tail"), 40*chunk+100); err != nil {
		t.Fatal(err)
	}
	f.Close()
	m, err := BuildFile(context.Background(), path, chunk)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, err := Build(context.Background(), bytes.NewReader(data), int64(len(data)), chunk, 1)
	if err != nil {
		t.Fatal(err)
	}
	if m.Root != want.Root || m.Size != want.Size {
		t.Fatalf("sparse file: root %s, want %s (as its bytes read)", m.Root, want.Root)
	}
	for i := range m.ChunkCount() {
		if m.Checksums[i] != want.Checksums[i] {
			t.Fatalf("chunk %d: CRC32C %08x, want %08x (as its bytes read)", i, m.Checksums[i], want.Checksums[i])
		}
	}
}

// TestBuildHugeSparseFile: a 100 GB file made by truncate publishes in a
// moment (the e2e tests serve one).
func TestBuildHugeSparseFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "huge.mp4")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	const size = 100 << 30
	if err := os.Truncate(path, size); err != nil {
		t.Skipf("no sparse files here: %v", err)
	}
	m, err := BuildFile(context.Background(), path, DefaultChunkSize)
	if err != nil {
		t.Fatal(err)
	}
	if m.ChunkCount() != size/DefaultChunkSize || m.Verify(12345, make([]byte, DefaultChunkSize)) != nil {
		t.Fatalf("%d chunks, or chunk 12345 is not zeros", m.ChunkCount())
	}
	f, _ := os.Open(path)
	defer f.Close()
	last := make([]byte, DefaultChunkSize)
	if _, err := f.ReadAt(last, size-DefaultChunkSize); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	if m.Verify(m.ChunkCount()-1, last) != nil {
		t.Fatal("last chunk digest")
	}
}
