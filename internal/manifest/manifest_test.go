package manifest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestBuildMatchesSequentialHash(t *testing.T) {
	for _, size := range []int{0, 1, MinChunkSize - 1, MinChunkSize, MinChunkSize + 1, 7*MinChunkSize + 5} {
		data := make([]byte, size)
		rand.Read(data)
		for _, workers := range []int{1, 2, 8} {
			m, err := Build(context.Background(), bytes.NewReader(data), int64(size), MinChunkSize, workers)
			if err != nil {
				t.Fatalf("size %d: %v", size, err)
			}
			if m.ChunkCount() != ChunkCountFor(int64(size), MinChunkSize) {
				t.Fatalf("size %d: %d chunks", size, m.ChunkCount())
			}
			var all []byte
			for i := range m.ChunkCount() {
				chunk := data[m.ChunkOffset(i) : m.ChunkOffset(i)+int64(m.ChunkLen(i))]
				if sha256.Sum256(chunk) != m.Digests[i] {
					t.Fatalf("size %d chunk %d: wrong digest", size, i)
				}
				if err := m.Verify(i, chunk); err != nil {
					t.Fatal(err)
				}
				all = append(all, m.Digests[i][:]...)
			}
			if sha256.Sum256(all) != m.Root {
				t.Fatalf("size %d: wrong root", size)
			}
			if err := m.Validate(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestVerifyRejects(t *testing.T) {
	data := make([]byte, 2*MinChunkSize)
	rand.Read(data)
	m, err := Build(context.Background(), bytes.NewReader(data), int64(len(data)), MinChunkSize, 1)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(data[:MinChunkSize])
	bad[100] ^= 1
	for name, tc := range map[string]struct {
		i    int
		data []byte
	}{
		"flipped bit": {0, bad},
		"short":       {0, data[:10]},
		"other chunk": {1, data[:MinChunkSize]},
	} {
		if err := m.Verify(tc.i, tc.data); !errors.Is(err, ErrDigestMismatch) {
			t.Errorf("%s: %v, want ErrDigestMismatch", name, err)
		}
	}
	if err := m.Verify(2, data[:1]); err == nil {
		t.Error("out of range chunk: no error")
	}
}

// VerifyLocal checks what Build read with the CRC32C it recorded, and a
// manifest from the wire (no checksums) with the digest: either way, bytes
// other than the chunk's are refused.
func TestVerifyLocal(t *testing.T) {
	data := make([]byte, 2*MinChunkSize+9)
	rand.Read(data)
	built, err := Build(context.Background(), bytes.NewReader(data), int64(len(data)), MinChunkSize, 2)
	if err != nil {
		t.Fatal(err)
	}
	received, err := FromProto(built.ToProto())
	if err != nil {
		t.Fatal(err)
	}
	if len(built.Checksums) != 3 || received.Checksums != nil {
		t.Fatalf("checksums: built %d, received %d", len(built.Checksums), len(received.Checksums))
	}
	bad := bytes.Clone(data[:MinChunkSize])
	bad[MinChunkSize-1] ^= 0x20
	for _, m := range []*Manifest{built, received} {
		for i := range m.ChunkCount() {
			if err := m.VerifyLocal(i, data[m.ChunkOffset(i):m.ChunkOffset(i)+int64(m.ChunkLen(i))]); err != nil {
				t.Fatalf("chunk %d: %v", i, err)
			}
		}
		for name, tc := range map[string]struct {
			i    int
			data []byte
		}{
			"flipped bit": {0, bad},
			"short":       {0, data[:MinChunkSize-1]},
			"other chunk": {1, data[:MinChunkSize]},
			"last chunk":  {2, data[:9]},
		} {
			if err := m.VerifyLocal(tc.i, tc.data); !errors.Is(err, ErrDigestMismatch) {
				t.Errorf("%s: %v, want ErrDigestMismatch", name, err)
			}
		}
		if err := m.VerifyLocal(3, data[:1]); err == nil {
			t.Error("out of range chunk: no error")
		}
	}
}

func TestProtoRoundTripAndValidation(t *testing.T) {
	data := make([]byte, 3*MinChunkSize+7)
	rand.Read(data)
	m, _ := Build(context.Background(), bytes.NewReader(data), int64(len(data)), MinChunkSize, 2)
	m.Name, m.ContentType, m.ModTime = "a/b.mp4", "video/mp4", time.Unix(1700000000, 5)
	got, err := FromProto(m.ToProto())
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(m) || got.Name != m.Name || !got.ModTime.Equal(m.ModTime) || got.ETag() != m.ETag() {
		t.Fatal("round trip changed the manifest")
	}
	for _, name := range []string{"root", "digest", "size", "chunk size", "truncated"} {
		p := m.ToProto()
		switch name {
		case "root":
			p.Root[0] ^= 1
		case "digest":
			p.ChunkDigests[40] ^= 1
		case "size":
			p.Size += uint64(MinChunkSize)
		case "chunk size":
			p.ChunkSize = 1
		case "truncated":
			p.ChunkDigests = p.ChunkDigests[:len(p.ChunkDigests)-1]
		}
		if _, err := FromProto(p); err == nil {
			t.Errorf("%s tampered: accepted", name)
		}
	}
}

func TestETagDependsOnRootOnly(t *testing.T) {
	a := &Manifest{Root: Digest{1}, Name: "a"}
	b := &Manifest{Root: Digest{1}, Name: "b"}
	c := &Manifest{Root: Digest{2}, Name: "a"}
	if a.ETag() != b.ETag() || a.ETag() == c.ETag() {
		t.Fatal("ETag must follow the root digest")
	}
	if e := a.ETag(); e[0] != '"' || e[len(e)-1] != '"' {
		t.Fatalf("ETag %s is not a strong quoted tag", e)
	}
}

func TestBuildFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f.mp4")
	data := make([]byte, 3*MinChunkSize)
	rand.Read(data)
	os.WriteFile(p, data, 0o644)
	m, err := BuildFile(context.Background(), p, MinChunkSize)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(p)
	if !m.ModTime.Equal(st.ModTime()) || m.Size != int64(len(data)) {
		t.Fatal("mod time or size not recorded")
	}
	if _, err := BuildFile(context.Background(), filepath.Dir(p), MinChunkSize); err == nil {
		t.Fatal("directory accepted")
	}
}

func TestCheckName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"a.mp4", true},
		{"films/2024/a b.mp4", true},
		{"é.mkv", true},
		{"", false},
		{"/a.mp4", false},
		{"../a", false},
		{"a/../b", false},
		{"a/./b", false},
		{"a//b", false},
		{"a/", false},
		{"..", false},
		{`a\..\b`, false},
		{"a\x00b", false},
		{"a\nb", false},
		{string([]byte{0xff, 0xfe}), false},
	} {
		err := CheckName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("CheckName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrBadName) {
			t.Errorf("CheckName(%q): error does not wrap ErrBadName", tc.name)
		}
	}
}

func TestContentType(t *testing.T) {
	for name, want := range map[string]string{
		"a.mp4": "video/mp4", "A.MP4": "video/mp4", "x.webm": "video/webm", "x.mkv": "video/x-matroska",
		"x.mpg": "video/mpeg", "x.ts": "video/mp2t", "x.m3u8": "application/vnd.apple.mpegurl",
		"x.mpd": "application/dash+xml", "x.bin": "application/octet-stream", "noext": "application/octet-stream",
	} {
		if got := ContentType(name); got != want {
			t.Errorf("ContentType(%q) = %q, want %q", name, got, want)
		}
	}
}

func FuzzFromProto(f *testing.F) {
	data := make([]byte, 2*MinChunkSize+1)
	m, _ := Build(context.Background(), bytes.NewReader(data), int64(len(data)), MinChunkSize, 1)
	p := m.ToProto()
	f.Add(p.Size, p.ChunkSize, p.ChunkDigests, p.Root)
	f.Fuzz(func(t *testing.T, size uint64, chunkSize uint32, digests, root []byte) {
		p := m.ToProto()
		p.Size, p.ChunkSize, p.ChunkDigests, p.Root = size, chunkSize, digests, root
		got, err := FromProto(p)
		if err != nil {
			return
		}
		if got.Validate() != nil {
			t.Fatal("FromProto accepted an invalid manifest")
		}
	})
}
