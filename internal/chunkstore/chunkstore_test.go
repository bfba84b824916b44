package chunkstore

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/p2pd/p2pd/internal/manifest"
)

// chunk returns deterministic bytes for chunk idx of a test file.
func chunk(seed byte, idx, size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = seed + byte(idx*7) + byte(i%251)
	}
	return b
}

func rootOf(seed byte) manifest.Digest { return sha256.Sum256([]byte{seed}) }

func open(t *testing.T, dir string, max int64) *Store {
	t.Helper()
	s, err := Open(dir, max)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// put stores a chunk and waits until it is durable, so its OnChange call
// has happened.
func put(t *testing.T, s *Store, root manifest.Digest, idx int, data []byte) {
	t.Helper()
	if err := s.Put(root, idx, data, sha256.Sum256(data)); err != nil {
		t.Fatalf("put %d: %v", idx, err)
	}
	s.Sync()
}

func TestPutGet(t *testing.T) {
	tests := []struct {
		name string
		size int
	}{
		{"one byte", 1},
		{"small", 1000},
		{"chunk", 64 << 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t, t.TempDir(), 1<<30)
			root := rootOf(1)
			data := chunk(1, 3, tc.size)
			put(t, s, root, 3, data)
			if !s.Has(root, 3) || s.Has(root, 2) {
				t.Fatalf("Has: 3=%v 2=%v", s.Has(root, 3), s.Has(root, 2))
			}
			got, err := s.Get(root, 3, sha256.Sum256(data), nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatal("read back different bytes")
			}
			if s.Bytes() != int64(tc.size) {
				t.Fatalf("Bytes = %d, want %d", s.Bytes(), tc.size)
			}
			// Putting it again changes nothing.
			put(t, s, root, 3, data)
			if s.Bytes() != int64(tc.size) {
				t.Fatalf("Bytes after second put = %d", s.Bytes())
			}
			if _, err := s.Get(root, 2, sha256.Sum256(data), nil); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get absent chunk: %v, want ErrNotFound", err)
			}
		})
	}
}

func TestPutRejectsMismatch(t *testing.T) {
	s := open(t, t.TempDir(), 1<<30)
	root := rootOf(1)
	data := chunk(1, 0, 1000)
	want := sha256.Sum256(data)
	data[10] ^= 1
	if err := s.Put(root, 0, data, want); !errors.Is(err, manifest.ErrDigestMismatch) {
		t.Fatalf("Put wrong bytes: %v, want ErrDigestMismatch", err)
	}
	if s.Has(root, 0) || s.Bytes() != 0 {
		t.Fatal("wrong bytes were stored")
	}
	if _, err := os.Stat(s.chunkPath(root, 0)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("chunk file exists: %v", err)
	}
}

// TestGetDetectsDamage covers damage after a chunk was stored: flipped
// bits, and a file truncated as if a crash tore a write the filesystem
// renamed before its data reached the disk.
func TestGetDetectsDamage(t *testing.T) {
	tests := []struct {
		name   string
		damage func(path string) error
	}{
		{"flipped byte", func(p string) error {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b[len(b)/2] ^= 0x80
			return os.WriteFile(p, b, 0o644)
		}},
		{"truncated", func(p string) error { return os.Truncate(p, 100) }},
		{"zero-filled", func(p string) error { return os.WriteFile(p, make([]byte, 1000), 0o644) }},
		{"extended", func(p string) error {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.Write([]byte("x"))
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t, t.TempDir(), 1<<30)
			var changed []manifest.Digest
			var mu sync.Mutex
			s.OnChange(func(r manifest.Digest) { mu.Lock(); changed = append(changed, r); mu.Unlock() })
			root := rootOf(2)
			data := chunk(2, 5, 1000)
			put(t, s, root, 5, data)
			if err := tc.damage(s.chunkPath(root, 5)); err != nil {
				t.Fatal(err)
			}
			got, err := s.Get(root, 5, sha256.Sum256(data), nil)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Get damaged chunk: %q, %v; want ErrCorrupt", got, err)
			}
			if s.Has(root, 5) || s.Bytes() != 0 || s.Corruptions() != 1 {
				t.Fatalf("after corruption: has=%v bytes=%d corruptions=%d", s.Has(root, 5), s.Bytes(), s.Corruptions())
			}
			if _, err := os.Stat(s.chunkPath(root, 5)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("corrupt file not removed: %v", err)
			}
			mu.Lock()
			if len(changed) != 2 || changed[1] != root {
				t.Fatalf("change notifications %v, want put and removal of %s", changed, root)
			}
			mu.Unlock()
			// A fresh put replaces it.
			put(t, s, root, 5, data)
			if _, err := s.Get(root, 5, sha256.Sum256(data), nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestGetFileVanished(t *testing.T) {
	s := open(t, t.TempDir(), 1<<30)
	root := rootOf(3)
	data := chunk(3, 0, 100)
	put(t, s, root, 0, data)
	os.Remove(s.chunkPath(root, 0))
	if _, err := s.Get(root, 0, sha256.Sum256(data), nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get: %v, want ErrNotFound", err)
	}
	if s.Has(root, 0) || s.Bytes() != 0 {
		t.Fatal("vanished chunk still indexed")
	}
}

func TestEvictionOrder(t *testing.T) {
	const size = 1000
	s := open(t, t.TempDir(), 3*size)
	root := rootOf(4)
	var changed sync.Map
	s.OnChange(func(r manifest.Digest) { changed.Store(r, true) })
	other := rootOf(5)
	put(t, s, root, 0, chunk(4, 0, size))
	put(t, s, root, 1, chunk(4, 1, size))
	put(t, s, other, 0, chunk(5, 0, size))
	// Reading chunk 0 makes chunk 1 the least recently used.
	if _, err := s.Get(root, 0, sha256.Sum256(chunk(4, 0, size)), nil); err != nil {
		t.Fatal(err)
	}
	changed.Clear()
	put(t, s, root, 2, chunk(4, 2, size))
	want := map[int]bool{0: true, 1: false, 2: true}
	for idx, held := range want {
		if s.Has(root, idx) != held {
			t.Errorf("chunk %d held = %v, want %v", idx, !held, held)
		}
	}
	if !s.Has(other, 0) {
		t.Error("other file's chunk evicted before the least recently used one")
	}
	if s.Evictions() != 1 || s.Bytes() != 3*size {
		t.Errorf("evictions=%d bytes=%d", s.Evictions(), s.Bytes())
	}
	if _, err := os.Stat(s.chunkPath(root, 1)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("evicted chunk file still on disk: %v", err)
	}
	if _, ok := changed.Load(root); !ok {
		t.Error("no change notification for the eviction")
	}
	if b := s.Held(root, 4); b.Count() != 2 || !b.Has(0) || !b.Has(2) {
		t.Errorf("Held = %d chunks", b.Count())
	}
}

func TestChunkLargerThanLimitIsKept(t *testing.T) {
	s := open(t, t.TempDir(), 1000)
	root := rootOf(6)
	put(t, s, root, 0, chunk(6, 0, 600))
	put(t, s, root, 1, chunk(6, 1, 1500))
	if s.Has(root, 0) || !s.Has(root, 1) {
		t.Fatalf("has 0=%v 1=%v; want only the chunk just written", s.Has(root, 0), s.Has(root, 1))
	}
}

func TestLimitRespected(t *testing.T) {
	dir := t.TempDir()
	const size, max = 700, 10_000
	s := open(t, dir, max)
	for i := range 100 {
		put(t, s, rootOf(byte(i%3)), i, chunk(byte(i%3), i, size))
		if s.Bytes() > max {
			t.Fatalf("after put %d: %d bytes > %d", i, s.Bytes(), max)
		}
	}
	var onDisk int64
	filepath.WalkDir(filepath.Join(dir, chunksDir), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			info, _ := d.Info()
			onDisk += info.Size() - TrailerSize
		}
		return nil
	})
	if onDisk != s.Bytes() || onDisk > max {
		t.Fatalf("%d chunk bytes on disk, store counts %d, limit %d", onDisk, s.Bytes(), max)
	}
}

func TestRestart(t *testing.T) {
	dir := t.TempDir()
	const size = 1000
	s := open(t, dir, 10*size)
	root := rootOf(7)
	for i := range 3 {
		put(t, s, root, i, chunk(7, i, size))
	}
	m := testManifest(t, 7)
	if err := s.PutManifest(m); err != nil {
		t.Fatal(err)
	}
	// A torn write left a temp file; a crash left an empty chunk file.
	tmp := filepath.Join(s.chunkDir(root), "9.123.tmp")
	os.WriteFile(tmp, []byte("half"), 0o644)
	mtmp := filepath.Join(dir, manifestsDir, "x.tmp")
	os.WriteFile(mtmp, []byte("half"), 0o644)
	os.WriteFile(s.chunkPath(root, 8), nil, 0o644)

	s2 := open(t, dir, 3*size)
	for _, p := range []string{tmp, mtmp, s2.chunkPath(root, 8)} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived Open: %v", p, err)
		}
	}
	if s2.Bytes() != 3*size || s2.Count(root) != 3 {
		t.Fatalf("after restart: %d bytes, %d chunks", s2.Bytes(), s2.Count(root))
	}
	for i := range 3 {
		got, err := s2.Get(root, i, sha256.Sum256(chunk(7, i, size)), nil)
		if err != nil || !bytes.Equal(got, chunk(7, i, size)) {
			t.Fatalf("chunk %d after restart: %v", i, err)
		}
	}
	gm, err := s2.GetManifest(m.Root)
	if err != nil || !gm.Equal(m) || gm.Name != m.Name {
		t.Fatalf("manifest after restart: %v", err)
	}
	if got := s2.Roots(); len(got) != 1 || got[0] != root {
		t.Fatalf("Roots = %v", got)
	}

	// LRU order after a restart follows the mtimes a previous run left:
	// chunk 1 is the oldest, so the next put evicts it.
	base := time.Now().Add(-time.Hour)
	for i, age := range []time.Duration{1, 3, 2} {
		tm := base.Add(-age * time.Minute)
		os.Chtimes(s.chunkPath(root, i), tm, tm)
	}
	s3 := open(t, dir, 3*size)
	put(t, s3, root, 5, chunk(7, 5, size))
	if s3.Has(root, 1) || !s3.Has(root, 0) || !s3.Has(root, 2) {
		t.Fatalf("after reopen and put: has 0=%v 1=%v 2=%v; want chunk 1 (oldest mtime) evicted", s3.Has(root, 0), s3.Has(root, 1), s3.Has(root, 2))
	}

	// Lowering the limit evicts at Open.
	s4 := open(t, dir, 2*size)
	if s4.Bytes() > 2*size {
		t.Fatalf("reopen with lower limit: %d bytes", s4.Bytes())
	}
}

func testManifest(t *testing.T, seed byte) *manifest.Manifest {
	t.Helper()
	const size = 100_000
	data := bytes.Repeat([]byte{seed}, size)
	m, err := manifest.Build(t.Context(), bytes.NewReader(data), size, manifest.MinChunkSize, 1)
	if err != nil {
		t.Fatal(err)
	}
	m.Name = fmt.Sprintf("file-%d.bin", seed)
	m.ContentType = "application/octet-stream"
	return m
}

func TestManifest(t *testing.T) {
	s := open(t, t.TempDir(), 1<<20)
	m := testManifest(t, 1)
	if _, err := s.GetManifest(m.Root); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetManifest before put: %v", err)
	}
	if err := s.PutManifest(m); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetManifest(m.Root)
	if err != nil || !got.Equal(m) {
		t.Fatalf("GetManifest: %v", err)
	}
	// A damaged manifest is refused and removed.
	os.WriteFile(s.manifestPath(m.Root), []byte("garbage"), 0o644)
	if _, err := s.GetManifest(m.Root); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("GetManifest damaged: %v", err)
	}
	if _, err := os.Stat(s.manifestPath(m.Root)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("damaged manifest not removed")
	}
	// A valid manifest stored under another root is refused too.
	other := testManifest(t, 2)
	s.PutManifest(other)
	os.Rename(s.manifestPath(other.Root), s.manifestPath(m.Root))
	if _, err := s.GetManifest(m.Root); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("GetManifest of another root: %v", err)
	}
}

func TestDropFile(t *testing.T) {
	s := open(t, t.TempDir(), 1<<20)
	m := testManifest(t, 3)
	s.PutManifest(m)
	other := rootOf(9)
	put(t, s, m.Root, 0, chunk(3, 0, 100))
	put(t, s, m.Root, 1, chunk(3, 1, 100))
	put(t, s, other, 0, chunk(9, 0, 100))
	if err := s.DropFile(m.Root); err != nil {
		t.Fatal(err)
	}
	if s.Count(m.Root) != 0 || s.Bytes() != 100 || !s.Has(other, 0) {
		t.Fatalf("after drop: count=%d bytes=%d", s.Count(m.Root), s.Bytes())
	}
	if _, err := s.GetManifest(m.Root); !errors.Is(err, ErrNotFound) {
		t.Fatalf("manifest after drop: %v", err)
	}
	if _, err := os.Stat(s.chunkDir(m.Root)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("chunk dir after drop: %v", err)
	}
	// The file can come back.
	put(t, s, m.Root, 1, chunk(3, 1, 100))
	if !s.Has(m.Root, 1) {
		t.Fatal("put after drop failed")
	}
}

func TestPutFailureLeavesStoreUnchanged(t *testing.T) {
	s := open(t, t.TempDir(), 1<<20)
	root := rootOf(10)
	// A regular file where the root's directory should be makes every
	// write fail, as a full or broken disk would.
	if err := os.WriteFile(s.chunkDir(root), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	data := chunk(10, 0, 100)
	if err := s.Put(root, 0, data, sha256.Sum256(data)); err == nil {
		t.Fatal("Put succeeded")
	}
	if s.Has(root, 0) || s.Bytes() != 0 {
		t.Fatal("failed put indexed")
	}
}

func TestConcurrent(t *testing.T) {
	const size = 500
	s := open(t, t.TempDir(), 20*size)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				root := rootOf(byte(i % 2))
				idx := (i*7 + g) % 40
				data := chunk(byte(i%2), idx, size)
				want := sha256.Sum256(data)
				if i%3 == 0 {
					if err := s.Put(root, idx, data, want); err != nil {
						t.Error(err)
						return
					}
					continue
				}
				got, err := s.Get(root, idx, want, nil)
				if err == nil && !bytes.Equal(got, data) {
					t.Error("wrong bytes served")
					return
				}
				if err != nil && !errors.Is(err, ErrNotFound) {
					t.Error(err)
					return
				}
				if g == 0 && i%50 == 0 {
					s.DropFile(root)
				}
			}
		})
	}
	wg.Wait()
	if s.Bytes() > 20*size {
		t.Fatalf("%d bytes over limit", s.Bytes())
	}
}
