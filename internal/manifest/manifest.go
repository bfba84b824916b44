// Package manifest describes a published file as content-addressed chunks:
// a SHA-256 digest per chunk and a root digest over all of them. Chunks are
// addressed everywhere in p2pd by (root, index), so a chunk's bytes never
// change and caches need no invalidation: a file changed on disk is a new
// root.
package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"time"
)

// DefaultChunkSize is the chunk size used when a publisher names none.
const DefaultChunkSize = 1 << 20

// Chunk sizes outside these bounds are refused: tiny chunks make manifests
// and bitmaps huge, giant ones make a viewer wait too long for the first
// verified byte.
const (
	MinChunkSize = 16 << 10
	MaxChunkSize = 64 << 20
)

// DigestSize is the size of a SHA-256 digest.
const DigestSize = sha256.Size

// Digest is a SHA-256 digest of a chunk or of a file's chunk digests.
type Digest [DigestSize]byte

// String returns the digest in lower-case hex.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// ParseDigest parses a hex digest as printed by String.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	if len(s) != 2*DigestSize {
		return d, fmt.Errorf("digest %q: want %d hex characters", s, 2*DigestSize)
	}
	if _, err := hex.Decode(d[:], []byte(s)); err != nil {
		return d, fmt.Errorf("digest %q: %w", s, err)
	}
	return d, nil
}

// DigestFromBytes converts a wire digest, checking its length.
func DigestFromBytes(b []byte) (Digest, error) {
	var d Digest
	if len(b) != DigestSize {
		return d, fmt.Errorf("digest is %d bytes, want %d", len(b), DigestSize)
	}
	copy(d[:], b)
	return d, nil
}

// ErrDigestMismatch reports chunk bytes that do not match their digest.
var ErrDigestMismatch = errors.New("chunk digest mismatch")

// Manifest describes one version of a published file.
type Manifest struct {
	Name        string
	Size        int64
	ChunkSize   int
	Digests     []Digest
	Root        Digest
	ModTime     time.Time
	ContentType string
	// Checksums holds the CRC32C (Castagnoli) of each chunk when Build
	// read the chunks in this process (an origin's own files): VerifyLocal
	// then checks a chunk read again from the same file for the price of a
	// CRC. Never sent: manifests from other nodes have none.
	Checksums []uint32
}

// ChunkCount returns the number of chunks (0 for an empty file).
func (m *Manifest) ChunkCount() int { return len(m.Digests) }

// ChunkOffset returns the file offset of chunk i.
func (m *Manifest) ChunkOffset(i int) int64 { return int64(i) * int64(m.ChunkSize) }

// ChunkLen returns the length of chunk i.
func (m *Manifest) ChunkLen(i int) int {
	return chunkLen(m.Size, m.ChunkSize, i)
}

func chunkLen(size int64, chunkSize, i int) int {
	rest := size - int64(i)*int64(chunkSize)
	if rest > int64(chunkSize) {
		return chunkSize
	}
	return int(rest)
}

// Verify checks data against the digest of chunk i.
func (m *Manifest) Verify(i int, data []byte) error {
	if i < 0 || i >= len(m.Digests) {
		return fmt.Errorf("chunk %d of %s: out of range [0,%d)", i, m.Root, len(m.Digests))
	}
	if len(data) != m.ChunkLen(i) {
		return fmt.Errorf("chunk %d of %s: %d bytes, want %d: %w", i, m.Root, len(data), m.ChunkLen(i), ErrDigestMismatch)
	}
	return VerifyChunk(m.Digests[i], data)
}

// VerifyLocal checks chunk i read back from the file this process built
// the manifest from: against the CRC32C Build recorded, or the digest when
// there is none. A CRC32C catches a file changed since it was hashed (it
// is no proof against someone forging bytes on purpose): bytes that leave
// the process are proved by their receiver, against the digest.
func (m *Manifest) VerifyLocal(i int, data []byte) error {
	if len(m.Checksums) != len(m.Digests) {
		return m.Verify(i, data)
	}
	if i < 0 || i >= len(m.Digests) {
		return fmt.Errorf("chunk %d of %s: out of range [0,%d)", i, m.Root, len(m.Digests))
	}
	if len(data) != m.ChunkLen(i) || crc32.Checksum(data, castagnoli) != m.Checksums[i] {
		return fmt.Errorf("chunk %d of %s: %w", i, m.Root, ErrDigestMismatch)
	}
	return nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// VerifyChunk checks data against want.
func VerifyChunk(want Digest, data []byte) error {
	if sha256.Sum256(data) != want {
		return ErrDigestMismatch
	}
	return nil
}

// ETag returns the strong HTTP entity tag of this version. It depends only
// on the root digest, so every node returns the same ETag for the same bytes.
func (m *Manifest) ETag() string { return ETag(m.Root) }

// ETag returns the strong entity tag for a root digest.
func ETag(root Digest) string { return `"` + hex.EncodeToString(root[:16]) + `"` }

// RootOf computes the root digest: SHA-256 over the concatenated chunk
// digests.
func RootOf(digests []Digest) Digest {
	h := sha256.New()
	for i := range digests {
		h.Write(digests[i][:])
	}
	var d Digest
	h.Sum(d[:0])
	return d
}

// ChunkCountFor returns how many chunks a file of size bytes has.
func ChunkCountFor(size int64, chunkSize int) int {
	if size <= 0 {
		return 0
	}
	return int((size + int64(chunkSize) - 1) / int64(chunkSize))
}

// Validate checks the manifest's internal consistency: it is how a manifest
// received from another node is trusted (its root must also be the one the
// receiver asked for).
func (m *Manifest) Validate() error {
	if m.ChunkSize < MinChunkSize || m.ChunkSize > MaxChunkSize {
		return fmt.Errorf("manifest %s: chunk size %d outside [%d,%d]", m.Name, m.ChunkSize, MinChunkSize, MaxChunkSize)
	}
	if m.Size < 0 {
		return fmt.Errorf("manifest %s: negative size", m.Name)
	}
	if n := ChunkCountFor(m.Size, m.ChunkSize); n != len(m.Digests) {
		return fmt.Errorf("manifest %s: %d digests for %d chunks", m.Name, len(m.Digests), n)
	}
	if RootOf(m.Digests) != m.Root {
		return fmt.Errorf("manifest %s: root does not match chunk digests", m.Name)
	}
	return nil
}

// Equal reports whether two manifests describe the same version.
func (m *Manifest) Equal(o *Manifest) bool {
	return m.Root == o.Root && m.Size == o.Size && m.ChunkSize == o.ChunkSize &&
		bytes.Equal(m.digestBytes(), o.digestBytes())
}

func (m *Manifest) digestBytes() []byte {
	b := make([]byte, 0, len(m.Digests)*DigestSize)
	for i := range m.Digests {
		b = append(b, m.Digests[i][:]...)
	}
	return b
}
