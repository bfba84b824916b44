package chunkstore

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"sync"
	"testing"
)

// TestTrailerDamage damages a stored chunk file in each of its parts. Bytes
// that changed are never served; a damaged trailer over intact bytes is
// caught by the SHA-256 fallback, and the chunk is served and rewritten
// with a good trailer.
func TestTrailerDamage(t *testing.T) {
	const size = 5000
	flip := func(off int) func([]byte) []byte {
		return func(b []byte) []byte {
			if off < 0 {
				off += len(b)
			}
			b[off] ^= 0x10
			return b
		}
	}
	tests := []struct {
		name    string
		damage  func(file []byte) []byte
		corrupt bool // else served, and repaired
	}{
		{"bit flip in the first byte", flip(0), true},
		{"bit flip in the last data byte", flip(size - 1), true},
		{"bit flip in the recorded digest", flip(size + 3), false},
		{"bit flip in the CRC32C", flip(size + 33), false},
		{"bit flip in the magic", flip(-1), false},
		{"trailer cut short", func(b []byte) []byte { return b[:len(b)-7] }, true},
		{"trailer gone", func(b []byte) []byte { return b[:size] }, false}, // the old format: verified by SHA-256
		{"data and trailer cut", func(b []byte) []byte { return b[:size/2] }, true},
		{"byte appended", func(b []byte) []byte { return append(b, 0) }, true},
		{"trailer moved into the data", func(b []byte) []byte { return append(b[:size-TrailerSize], b[size:]...) }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t, t.TempDir(), 1<<30)
			root := rootOf(11)
			data := chunk(11, 2, size)
			want := sha256.Sum256(data)
			put(t, s, root, 2, data)
			path := s.chunkPath(root, 2)
			file, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(file) != size+TrailerSize || !bytes.Equal(file[:size], data) {
				t.Fatalf("stored file of %d bytes, want the chunk's %d and a trailer", len(file), size)
			}
			if err := os.WriteFile(path, tc.damage(file), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := s.Get(root, 2, want, nil)
			if tc.corrupt {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Get: %d bytes, %v; want ErrCorrupt", len(got), err)
				}
				if s.Has(root, 2) || s.Corruptions() != 1 || s.Bytes() != 0 {
					t.Fatalf("after corruption: has=%v corruptions=%d bytes=%d", s.Has(root, 2), s.Corruptions(), s.Bytes())
				}
				if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("corrupt file not removed: %v", err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("Get: %v, or wrong bytes", err)
			}
			repaired, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(repaired, append(bytes.Clone(data), tailOf(data, want)...)) {
				t.Fatalf("file not rewritten with a good trailer: %v", err)
			}
			if s.Bytes() != size || s.Corruptions() != 0 {
				t.Fatalf("after repair: bytes=%d corruptions=%d", s.Bytes(), s.Corruptions())
			}
		})
	}
}

func tailOf(data []byte, want [32]byte) []byte {
	t := trailer(data, want)
	return t[:]
}

// TestOldFormat: chunk files written before trailers existed (the chunk's
// bytes alone) are found at Open, verified with SHA-256 on their first
// read and rewritten with a trailer; damaged ones are never served.
func TestOldFormat(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 1<<30)
	root := rootOf(12)
	sizes := []int{1, TrailerSize - 1, TrailerSize, TrailerSize + 1, 3000}
	for i, n := range sizes {
		if err := os.MkdirAll(s.chunkDir(root), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(s.chunkPath(root, i), chunk(12, i, n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A damaged old chunk and one holding another chunk's bytes.
	bad := chunk(12, 5, 3000)
	bad[100] ^= 1
	os.WriteFile(s.chunkPath(root, 5), bad, 0o644)
	os.WriteFile(s.chunkPath(root, 6), chunk(12, 7, 3000), 0o644)

	s = open(t, dir, 1<<30)
	var total int64
	for _, n := range sizes {
		total += int64(n)
	}
	// Files longer than a trailer count TrailerSize short until rewritten.
	if s.Count(root) != 7 || s.Bytes() != total+6000-4*TrailerSize {
		t.Fatalf("after Open: %d chunks, %d bytes", s.Count(root), s.Bytes())
	}
	for i, n := range sizes {
		data := chunk(12, i, n)
		got, err := s.Get(root, i, sha256.Sum256(data), nil)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("old chunk %d (%d bytes): %v, or wrong bytes", i, n, err)
		}
		file, err := os.ReadFile(s.chunkPath(root, i))
		if err != nil || !bytes.Equal(file, append(bytes.Clone(data), tailOf(data, sha256.Sum256(data))...)) {
			t.Fatalf("old chunk %d not upgraded: %v", i, err)
		}
		// Read again: now through its trailer.
		if got, err := s.Get(root, i, sha256.Sum256(data), nil); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("upgraded chunk %d: %v", i, err)
		}
	}
	for _, i := range []int{5, 6} {
		if _, err := s.Get(root, i, sha256.Sum256(chunk(12, i, 3000)), nil); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("damaged old chunk %d: %v, want ErrCorrupt", i, err)
		}
	}
	var upgraded int64
	for _, n := range sizes {
		upgraded += int64(n)
	}
	if s.Count(root) != len(sizes) || s.Bytes() != upgraded || s.Corruptions() != 2 {
		t.Fatalf("after reads: %d chunks, %d bytes (want %d), %d corruptions", s.Count(root), s.Bytes(), upgraded, s.Corruptions())
	}
}

// A buffer with room for exactly the chunk (the pool's 1 MiB buffers and
// 1 MiB chunks) is filled in place: the trailer needs no room in it.
func TestGetFillsBufferInPlace(t *testing.T) {
	s := open(t, t.TempDir(), 1<<30)
	root := rootOf(13)
	data := chunk(13, 0, 4096)
	put(t, s, root, 0, data)
	buf := make([]byte, 4096)
	got, err := s.Get(root, 0, sha256.Sum256(data), buf)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get: %v", err)
	}
	if &got[0] != &buf[0] {
		t.Fatal("Get allocated instead of filling the caller's buffer")
	}
}

// Old chunk files read by many requests at once, while the file is dropped
// and put again: every read serves the right bytes or none, and the store
// ends consistent with the directory.
func TestOldFormatConcurrentUpgrade(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 1<<30)
	root := rootOf(14)
	const n, size = 16, 2000
	if err := os.MkdirAll(s.chunkDir(root), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := os.WriteFile(s.chunkPath(root, i), chunk(14, i, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s = open(t, dir, 1<<30)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 3 * n {
				idx := (i + g) % n
				data := chunk(14, idx, size)
				got, err := s.Get(root, idx, sha256.Sum256(data), nil)
				if err == nil && !bytes.Equal(got, data) {
					t.Error("wrong bytes served")
					return
				}
				if err != nil && !errors.Is(err, ErrNotFound) {
					t.Error(err)
					return
				}
				if g == 0 && i == n {
					s.DropFile(root)
				}
				if g == 1 && i > n {
					put(t, s, root, idx, data)
				}
			}
		})
	}
	wg.Wait()
	var files int64
	entries, _ := os.ReadDir(s.chunkDir(root))
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		files += info.Size() - TrailerSize
	}
	if s.Bytes() != files || int64(s.Count(root))*size != files {
		t.Fatalf("store counts %d bytes in %d chunks; the directory holds %d bytes of chunks", s.Bytes(), s.Count(root), files)
	}
}
