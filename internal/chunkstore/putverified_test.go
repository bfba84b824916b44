package chunkstore

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"testing"
)

// PutVerified skips only the hash: the chunk is stored and read back like
// one Put stored, and Get refuses it under any other digest.
func TestPutVerified(t *testing.T) {
	s := open(t, t.TempDir(), 1<<30)
	root := rootOf(2)
	data := chunk(2, 5, 4096)
	if err := s.PutVerified(root, 5, data, sha256.Sum256(data)); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(root, 5, sha256.Sum256(data), nil)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get after PutVerified: %v", err)
	}
	// Chunk 5's bytes (and digest) stored as chunk 6 by mistake: asked for
	// chunk 6's digest, Get refuses them and drops the file.
	if err := s.PutVerified(root, 6, data, sha256.Sum256(data)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(root, 6, sha256.Sum256(chunk(2, 6, 4096)), nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Get of mislabelled bytes: %v, want ErrCorrupt", err)
	}
	if s.Has(root, 6) {
		t.Fatal("mislabelled chunk kept")
	}
	if _, err := os.Stat(s.chunkPath(root, 6)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("mislabelled chunk file left: %v", err)
	}
	if err := s.PutVerified(root, -1, data, sha256.Sum256(data)); err == nil {
		t.Fatal("negative index accepted")
	}
}
