package chunkstore

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/p2pd/p2pd/internal/manifest"
)

// PutVerified skips only the hash: the chunk is stored and read back like
// one Put stored, and Get still catches bytes that were wrong all along.
func TestPutVerified(t *testing.T) {
	s := open(t, t.TempDir(), 1<<30)
	root := rootOf(2)
	data := chunk(2, 5, 4096)
	if err := s.PutVerified(root, 5, data); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(root, 5, sha256.Sum256(data), nil)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get after PutVerified: %v", err)
	}
	// A caller that lied: Get refuses the bytes and drops the chunk.
	wrong := chunk(2, 6, 4096)
	if err := s.PutVerified(root, 6, wrong); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(root, 6, sha256.Sum256(data), nil); !errors.Is(err, ErrCorrupt) && !errors.Is(err, manifest.ErrDigestMismatch) {
		t.Fatalf("Get of mislabelled bytes: %v, want a digest failure", err)
	}
	if s.Has(root, 6) {
		t.Fatal("mislabelled chunk kept")
	}
	if err := s.PutVerified(root, -1, data); err == nil {
		t.Fatal("negative index accepted")
	}
}
