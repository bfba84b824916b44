package manifest

import (
	"context"
	"crypto/sha256"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"runtime"
	"sync"
)

// Build hashes the size bytes of r in chunks of chunkSize. Workers hash
// chunks in parallel, each reading its own chunk, so memory stays at one
// chunk per worker whatever the file size. workers <= 0 means one per CPU.
func Build(ctx context.Context, r io.ReaderAt, size int64, chunkSize, workers int) (*Manifest, error) {
	if chunkSize < MinChunkSize || chunkSize > MaxChunkSize {
		return nil, fmt.Errorf("chunk size %d outside [%d,%d]", chunkSize, MinChunkSize, MaxChunkSize)
	}
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	n := ChunkCountFor(size, chunkSize)
	m := &Manifest{Size: size, ChunkSize: chunkSize, Digests: make([]Digest, n), Checksums: make([]uint32, n)}
	if workers > n {
		workers = n
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err; cancel() })
	}
	holes, _ := r.(holeFinder)
	var zeros zeroDigests
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, chunkSize)
			for i := range next {
				n := chunkLen(size, chunkSize, i)
				if holes != nil && holes.hole(int64(i)*int64(chunkSize), int64(n)) {
					m.Digests[i], m.Checksums[i] = zeros.of(n)
					continue
				}
				b := buf[:n]
				if _, err := r.ReadAt(b, int64(i)*int64(chunkSize)); err != nil && !(err == io.EOF && len(b) > 0) {
					fail(fmt.Errorf("read chunk %d: %w", i, err))
					continue
				}
				m.Digests[i] = sha256.Sum256(b)
				m.Checksums[i] = crc32.Checksum(b, castagnoli)
			}
		}()
	}
feed:
	for i := 0; i < n; i++ {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.Root = RootOf(m.Digests)
	return m, nil
}

// BuildFile builds the manifest of the file at path, recording its
// modification time. The caller sets Name and ContentType.
//
// The file is stat'ed before and after hashing: if it changed meanwhile the
// digests may mix two versions, so BuildFile fails rather than publish them.
func BuildFile(ctx context.Context, path string, chunkSize int) (*Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	before, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !before.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	m, err := Build(ctx, sparseFile{f}, before.Size(), chunkSize, 0)
	if err != nil {
		return nil, fmt.Errorf("hash %s: %w", path, err)
	}
	after, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) {
		return nil, fmt.Errorf("hash %s: file changed while it was hashed", path)
	}
	m.ModTime = before.ModTime()
	return m, nil
}

// holeFinder is a reader that knows where its file has holes: ranges with
// no storage behind them, which read as zeros. A sparse file of any size
// (a preallocated recording, a 100 GB test file made by truncate) is then
// hashed without reading its holes.
type holeFinder interface {
	hole(off, n int64) bool
}

// sparseFile is a file whose holes the system can tell (see hole_*.go).
type sparseFile struct{ *os.File }

func (f sparseFile) hole(off, n int64) bool { return isHole(f.File, off, n) }

// zeroDigests computes the digest of a run of zeros once per length (every
// chunk of a file has the same length but the last), with its CRC32C.
type zeroDigests struct {
	mu sync.Mutex
	m  map[int]zeroSums
}

type zeroSums struct {
	digest Digest
	crc    uint32
}

func (z *zeroDigests) of(n int) (Digest, uint32) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if d, ok := z.m[n]; ok {
		return d.digest, d.crc
	}
	if z.m == nil {
		z.m = map[int]zeroSums{}
	}
	zeros := make([]byte, n)
	d := zeroSums{sha256.Sum256(zeros), crc32.Checksum(zeros, castagnoli)}
	z.m[n] = d
	return d.digest, d.crc
}
