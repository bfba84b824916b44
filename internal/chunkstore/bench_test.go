package chunkstore

import (
	"crypto/sha256"
	"testing"
)

// BenchmarkGet reads one 1 MiB chunk from the store (from the page cache)
// into a reused buffer, checked by its trailer; "sha256" is the same read
// checked the way every read was before trailers (and files without one
// still are, once).
func BenchmarkGet(b *testing.B) {
	const size = 1 << 20
	data := chunk(1, 0, size)
	want := sha256.Sum256(data)
	s, err := Open(b.TempDir(), 1<<30)
	if err != nil {
		b.Fatal(err)
	}
	root := rootOf(1)
	if err := s.Put(root, 0, data, want); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, size)
	b.Run("trailer", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			if _, err := s.Get(root, 0, want, buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sha256", func(b *testing.B) {
		b.SetBytes(size)
		var tail [TrailerSize]byte
		for b.Loop() {
			got, _, err := readChunk(s.chunkPath(root, 0), buf, &tail)
			if err != nil || sha256.Sum256(got) != want {
				b.Fatal("read back wrong", err)
			}
		}
	})
}
