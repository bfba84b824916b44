// Package chunkstore keeps verified chunks and manifests on disk with a size
// limit (on chunk data) and least-recently-used eviction.
//
// Layout under the store's directory:
//
//	chunks/<root hex>/<index>   one file per chunk: its exact bytes, then a
//	                            trailer (digest, CRC32C; see TrailerSize)
//	manifests/<root hex>        a proto-marshalled spp.v1.Manifest
//	*.tmp                       files being written (removed at Open)
//
// A chunk is stored only once its SHA-256 matched the manifest (Put hashes
// it; PutVerified takes the word of a caller that just did). A chunk file
// only ever appears under its final name by rename of a complete temp
// file, so a crash mid-write leaves a *.tmp that Open removes; chunks are
// made durable in batches and acknowledged (Held, OnChange) only then
// (durable.go). The store trusts nothing it reads back: Get checks every chunk against
// its trailer (the digest it was stored under and the CRC32C of its
// bytes), so a file torn by a crash the filesystem did not protect us
// from, or damaged later, is detected, deleted and never served. A file
// without a valid trailer is served only if its SHA-256 matches.
//
// The index (which chunks exist, their sizes and LRU order) lives
// in memory and is rebuilt at Open from the directory, ordered by
// modification time.
package chunkstore

import (
	"container/list"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	"github.com/p2pd/p2pd/internal/bitmap"
	"github.com/p2pd/p2pd/internal/manifest"
	"google.golang.org/protobuf/proto"
)

// ErrNotFound reports a chunk or manifest the store does not hold.
var ErrNotFound = errors.New("not in chunk store")

// ErrCorrupt reports a stored chunk or manifest whose bytes no longer match
// their digest. The store has deleted it.
var ErrCorrupt = errors.New("corrupt in chunk store")

const (
	chunksDir    = "chunks"
	manifestsDir = "manifests"
	tmpSuffix    = ".tmp"

	// touchInterval bounds how often a read chunk's mtime is refreshed on
	// disk: the mtime only orders eviction after a restart, so a coarse one
	// is enough and hot chunks cost no metadata write per read.
	touchInterval = time.Minute
)

type entry struct {
	root     manifest.Digest
	idx      int
	size     int64
	touched  time.Time // mtime last written to disk
	unsynced bool      // written, not yet durable (see durable.go)
}

// Store is a size-bounded disk store of verified chunks. It is safe for
// concurrent use.
type Store struct {
	dir      string
	maxBytes int64

	// mu guards the index. It is never held while chunk data is written,
	// fsynced or read; it is held across the renames and unlinks of final
	// chunk names, so the index and the directory never disagree about
	// which chunk file is current.
	mu        sync.Mutex
	lru       *list.List // of *entry, most recently used at the front
	roots     map[manifest.Digest]map[int]*list.Element
	bytes     int64
	evictions uint64
	corrupt   uint64
	onChange  func(root manifest.Digest)

	// syncMu guards the syncer's queue (durable.go); never held with mu.
	syncMu        sync.Mutex
	synced        *sync.Cond // a batch was made durable, or the queue has room
	unsynced      []unsynced
	syncing       bool
	syncedBatches uint64
}

// Open opens (creating if needed) the store in dir, holding at most
// maxBytes of chunk data. It removes temp files left by an interrupted
// write, rebuilds the index from the chunk files and evicts down to the
// limit if it was lowered.
func Open(dir string, maxBytes int64) (*Store, error) {
	if maxBytes <= 0 {
		return nil, fmt.Errorf("chunk store %s: max bytes %d must be positive", dir, maxBytes)
	}
	s := &Store{
		dir:      dir,
		maxBytes: maxBytes,
		lru:      list.New(),
		roots:    map[manifest.Digest]map[int]*list.Element{},
	}
	s.synced = sync.NewCond(&s.syncMu)
	for _, d := range []string{chunksDir, manifestsDir} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("chunk store %s: %w", dir, err)
		}
	}
	if err := removeTemps(filepath.Join(dir, manifestsDir)); err != nil {
		return nil, fmt.Errorf("chunk store %s: %w", dir, err)
	}
	found, err := s.scan()
	if err != nil {
		return nil, fmt.Errorf("chunk store %s: %w", dir, err)
	}
	sort.SliceStable(found, func(i, j int) bool { return found[i].touched.Before(found[j].touched) })
	for _, e := range found {
		s.insertLocked(e)
	}
	s.evictLocked(nil)
	return s, nil
}

// scan lists the chunk files on disk, removing temp files, empty files (a
// chunk is never empty) and empty root directories.
func (s *Store) scan() ([]*entry, error) {
	base := filepath.Join(s.dir, chunksDir)
	dirs, err := os.ReadDir(base)
	if err != nil {
		return nil, err
	}
	var found []*entry
	for _, d := range dirs {
		root, err := manifest.ParseDigest(d.Name())
		if err != nil || !d.IsDir() {
			continue // not ours; leave it alone
		}
		rdir := filepath.Join(base, d.Name())
		files, err := os.ReadDir(rdir)
		if err != nil {
			return nil, err
		}
		kept := 0
		for _, f := range files {
			name := f.Name()
			if strings.HasSuffix(name, tmpSuffix) {
				if err := os.Remove(filepath.Join(rdir, name)); err != nil {
					return nil, err
				}
				continue
			}
			idx, err := strconv.Atoi(name)
			if err != nil || idx < 0 || strconv.Itoa(idx) != name || !f.Type().IsRegular() {
				kept++
				continue
			}
			info, err := f.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				return nil, err
			}
			if info.Size() == 0 {
				if err := os.Remove(filepath.Join(rdir, name)); err != nil {
					return nil, err
				}
				continue
			}
			kept++
			// A file from before trailers counts TrailerSize short until
			// its first read rewrites it.
			size := info.Size()
			if size > TrailerSize {
				size -= TrailerSize
			}
			found = append(found, &entry{root: root, idx: idx, size: size, touched: info.ModTime()})
		}
		if kept == 0 {
			os.Remove(rdir) // best effort: an empty directory costs nothing
		}
	}
	return found, nil
}

func removeTemps(dir string) error {
	files, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, f := range files {
		if strings.HasSuffix(f.Name(), tmpSuffix) {
			if err := os.Remove(filepath.Join(dir, f.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// OnChange registers f to be called with a file's root after chunks of it
// were added or removed (put, eviction, corruption, DropFile). f runs
// without the store's lock, possibly from several goroutines at once, on
// the goroutine that changed the store: it must be quick.
func (s *Store) OnChange(f func(root manifest.Digest)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onChange = f
}

func (s *Store) notify(roots ...manifest.Digest) {
	s.mu.Lock()
	f := s.onChange
	s.mu.Unlock()
	if f == nil {
		return
	}
	seen := map[manifest.Digest]bool{}
	for _, r := range roots {
		if !seen[r] {
			seen[r] = true
			f(r)
		}
	}
}

func (s *Store) chunkDir(root manifest.Digest) string {
	return filepath.Join(s.dir, chunksDir, root.String())
}

func (s *Store) chunkPath(root manifest.Digest, idx int) string {
	return filepath.Join(s.chunkDir(root), strconv.Itoa(idx))
}

func (s *Store) manifestPath(root manifest.Digest) string {
	return filepath.Join(s.dir, manifestsDir, root.String())
}

func (s *Store) lookupLocked(root manifest.Digest, idx int) *list.Element {
	return s.roots[root][idx]
}

func (s *Store) insertLocked(e *entry) *list.Element {
	el := s.lru.PushFront(e)
	m := s.roots[e.root]
	if m == nil {
		m = map[int]*list.Element{}
		s.roots[e.root] = m
	}
	m[e.idx] = el
	s.bytes += e.size
	return el
}

func (s *Store) removeLocked(el *list.Element) {
	e := el.Value.(*entry)
	s.lru.Remove(el)
	m := s.roots[e.root]
	delete(m, e.idx)
	if len(m) == 0 {
		delete(s.roots, e.root)
	}
	s.bytes -= e.size
}

// currentLocked reports whether el is still the index entry for its chunk:
// a reader that dropped the lock must not act on an entry that was evicted
// and replaced by a newer write meanwhile.
func (s *Store) currentLocked(el *list.Element) bool {
	e := el.Value.(*entry)
	return s.lookupLocked(e.root, e.idx) == el
}

// evictLocked removes least-recently-used chunks until the store is within
// its limit, never keep itself (the chunk just written: evicting it would
// make the write pointless). It returns the roots that lost chunks.
func (s *Store) evictLocked(keep *list.Element) []manifest.Digest {
	var roots []manifest.Digest
	for s.bytes > s.maxBytes {
		el := s.lru.Back()
		if el == nil || el == keep {
			break
		}
		e := el.Value.(*entry)
		// An unlink is a metadata operation, cheap enough under the lock;
		// doing it outside would let a concurrent Put of the same chunk
		// rename its new file into place just before we delete it.
		//
		// If the unlink fails the chunk is forgotten anyway: stopping here
		// would let the store grow without bound, and Open retries it.
		os.Remove(s.chunkPath(e.root, e.idx))
		s.removeLocked(el)
		s.evictions++
		roots = append(roots, e.root)
	}
	return roots
}

// Put verifies data against want and stores it as chunk idx of root. A
// chunk already held is only marked as recently used. Put then evicts
// least-recently-used chunks until the store is within its limit (never
// this chunk). A disk that fills up before the store reaches its limit
// (the limit is larger than the disk, or other files share it) is handled
// like the limit: least-recently-used chunks are evicted to make room and
// the write is tried again. Put fails with manifest.ErrDigestMismatch for
// wrong bytes and with a wrapped OS error (e.g. ENOSPC when even an empty
// store leaves no room) when the disk refuses the write; the store is then
// unchanged, apart from what was evicted to make room.
func (s *Store) Put(root manifest.Digest, idx int, data []byte, want manifest.Digest) error {
	if sha256.Sum256(data) != want {
		return fmt.Errorf("put chunk %d of %s: %w", idx, root, manifest.ErrDigestMismatch)
	}
	return s.PutVerified(root, idx, data, want)
}

// PutVerified is Put for bytes the caller verified against digest itself,
// a moment ago and in this process (a chunk just received and checked by
// spp.ChunkReader): hashing them a second time would only cost CPU. The
// store records digest and the bytes' CRC32C with them: from then on Get
// serves them as long as they keep that CRC32C and digest is the one
// asked for.
func (s *Store) PutVerified(root manifest.Digest, idx int, data []byte, digest manifest.Digest) error {
	if idx < 0 {
		return fmt.Errorf("put chunk %d of %s: negative index", idx, root)
	}
	s.mu.Lock()
	if el := s.lookupLocked(root, idx); el != nil {
		s.lru.MoveToFront(el)
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()

	dir := s.chunkDir(root)
	tail := trailer(data, digest)
	tmp, err := s.writeTempRoom(dir, strconv.Itoa(idx), data, tail[:], false)
	if err != nil {
		return fmt.Errorf("put chunk %d of %s: %w", idx, root, err)
	}
	now := time.Now()
	s.mu.Lock()
	if el := s.lookupLocked(root, idx); el != nil {
		// A concurrent Put of the same chunk won; its bytes are the same.
		s.lru.MoveToFront(el)
		s.mu.Unlock()
		os.Remove(tmp)
		return nil
	}
	if err := os.Rename(tmp, s.chunkPath(root, idx)); err != nil {
		s.mu.Unlock()
		os.Remove(tmp)
		return fmt.Errorf("put chunk %d of %s: %w", idx, root, err)
	}
	el := s.insertLocked(&entry{root: root, idx: idx, size: int64(len(data)), touched: now, unsynced: true})
	evicted := s.evictLocked(el)
	s.mu.Unlock()

	s.notify(evicted...)
	// Durable and acknowledged later, in a batch (durable.go). Failing to
	// sync is not an error for the caller: the chunk is in place, and if a
	// crash loses or tears it, Open or Get notices.
	s.queueSync(el, s.chunkPath(root, idx), dir)
	return nil
}

// writeTempRoom is writeTemp on a disk that may be full: when the write
// fails for lack of space, it evicts least-recently-used chunks worth
// twice the data (file systems need some room beyond the bytes) and tries
// once more.
func (s *Store) writeTempRoom(dir, prefix string, data, tail []byte, sync bool) (string, error) {
	tmp, err := s.writeTemp(dir, prefix, data, tail, sync)
	if !errors.Is(err, syscall.ENOSPC) && !errors.Is(err, syscall.EDQUOT) {
		return tmp, err
	}
	s.mu.Lock()
	evicted := s.freeLocked(2*int64(len(data)) + 4096)
	s.mu.Unlock()
	if len(evicted) == 0 {
		return "", err
	}
	s.notify(evicted...)
	return s.writeTemp(dir, prefix, data, tail, sync)
}

// freeLocked evicts least-recently-used chunks until n bytes are freed or
// the store is empty, and returns the roots that lost chunks.
func (s *Store) freeLocked(n int64) []manifest.Digest {
	var roots []manifest.Digest
	for freed := int64(0); freed < n; {
		el := s.lru.Back()
		if el == nil {
			break
		}
		e := el.Value.(*entry)
		os.Remove(s.chunkPath(e.root, e.idx)) // as in evictLocked
		s.removeLocked(el)
		s.evictions++
		freed += e.size
		roots = append(roots, e.root)
	}
	return roots
}

// writeTemp writes data then tail to a new temp file in dir (created if
// missing), fsynced if sync, and returns its path.
func (s *Store) writeTemp(dir, prefix string, data, tail []byte, sync bool) (string, error) {
	var f *os.File
	var err error
	// A concurrent DropFile may remove dir between our mkdir and create.
	for range 3 {
		f, err = os.CreateTemp(dir, prefix+".*"+tmpSuffix)
		if !errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err = os.Mkdir(dir, 0o755); err == nil {
			syncPath(filepath.Dir(dir))
		} else if !errors.Is(err, fs.ErrExist) {
			return "", err
		}
	}
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil && len(tail) > 0 {
		_, err = f.Write(tail)
	}
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}

// syncPath flushes a file, or a directory's entries, to the disk.
func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// Get reads chunk idx of root into buf (grown if too small), checks it
// and returns it. It fails with ErrNotFound if the chunk is not held, and
// with ErrCorrupt if the stored bytes are not chunk want: the chunk is
// then deleted, so a later Put can replace it.
//
// A chunk is served when its trailer records want and its bytes still
// have the trailer's CRC32C. Otherwise (a file from before trailers, or a
// damaged trailer) it is served only if its SHA-256 is want, and the file
// is then rewritten with a good trailer, so the full hash is paid once.
func (s *Store) Get(root manifest.Digest, idx int, want manifest.Digest, buf []byte) ([]byte, error) {
	s.mu.Lock()
	el := s.lookupLocked(root, idx)
	s.mu.Unlock()
	if el == nil {
		return nil, fmt.Errorf("chunk %d of %s: %w", idx, root, ErrNotFound)
	}
	path := s.chunkPath(root, idx)
	var tail [TrailerSize]byte
	data, hasTail, err := readChunk(path, buf, &tail)
	if errors.Is(err, fs.ErrNotExist) {
		s.drop(el, false)
		return nil, fmt.Errorf("chunk %d of %s: %w", idx, root, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("chunk %d of %s: %w", idx, root, err)
	}
	if !hasTail || !intact(data, tail[:], want) {
		switch {
		case hasTail && sha256.Sum256(data) == want:
			// The bytes are right; the trailer was damaged.
		case hasTail && sha256.Sum256(append(data, tail[:]...)) == want:
			// A chunk stored without a trailer: the whole file is the chunk.
			data = append(data, tail[:]...)
		case !hasTail && len(data) > 0 && sha256.Sum256(data) == want:
			// A chunk without a trailer, too short to have one.
		default:
			s.drop(el, true)
			return nil, fmt.Errorf("chunk %d of %s: %w", idx, root, ErrCorrupt)
		}
		s.rewrite(el, data, want)
	}
	now := time.Now()
	touch := false
	s.mu.Lock()
	if s.currentLocked(el) {
		s.lru.MoveToFront(el)
		e := el.Value.(*entry)
		if now.Sub(e.touched) >= touchInterval {
			e.touched, touch = now, true
		}
	}
	s.mu.Unlock()
	if touch {
		os.Chtimes(path, now, now) // best effort: only orders eviction after a restart
	}
	return data, nil
}

// rewrite replaces the file of el, whose bytes data were just verified
// against want with SHA-256, by one with a good trailer. Best effort: a
// chunk that cannot be rewritten is verified with SHA-256 again next time.
func (s *Store) rewrite(el *list.Element, data []byte, want manifest.Digest) {
	e := el.Value.(*entry)
	dir := s.chunkDir(e.root)
	tail := trailer(data, want)
	tmp, err := s.writeTemp(dir, strconv.Itoa(e.idx), data, tail[:], true)
	if err != nil {
		return
	}
	s.mu.Lock()
	if !s.currentLocked(el) || os.Rename(tmp, s.chunkPath(e.root, e.idx)) != nil {
		s.mu.Unlock()
		os.Remove(tmp)
		return
	}
	s.bytes += int64(len(data)) - e.size
	e.size = int64(len(data))
	s.mu.Unlock()
	syncPath(dir)
}

// readChunk reads the chunk file at path: its bytes into buf (grown if too
// small) and, when the file is longer than a trailer, its last TrailerSize
// bytes into tail. A file larger than any chunk file can be is returned as
// empty: it cannot be a chunk.
func readChunk(path string, buf []byte, tail *[TrailerSize]byte) (data []byte, hasTail bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, false, err
	}
	n := info.Size()
	if n > manifest.MaxChunkSize+TrailerSize {
		// Reading it would only waste memory: it cannot verify.
		return buf[:0], false, nil
	}
	hasTail = n > TrailerSize
	if hasTail {
		n -= TrailerSize
	}
	if int64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := f.ReadAt(buf, 0); err != nil {
		if errors.Is(err, io.EOF) {
			// Shrunk under us: verification fails on what we have.
			return buf[:0], false, nil
		}
		return nil, false, err
	}
	if hasTail {
		if _, err := f.ReadAt(tail[:], n); err != nil {
			if errors.Is(err, io.EOF) {
				return buf[:0], false, nil
			}
			return nil, false, err
		}
	}
	return buf, hasTail, nil
}

// drop removes a chunk that vanished from disk or failed verification, if
// el is still its current entry.
func (s *Store) drop(el *list.Element, corrupt bool) {
	e := el.Value.(*entry)
	s.mu.Lock()
	if !s.currentLocked(el) {
		s.mu.Unlock()
		return
	}
	if corrupt {
		s.corrupt++
		// Forgotten even if the unlink fails: an entry that cannot be
		// served is worse than a file unaccounted for until the next Open,
		// whose Get would find it corrupt again.
		os.Remove(s.chunkPath(e.root, e.idx))
	}
	s.removeLocked(el)
	s.mu.Unlock()
	s.notify(e.root)
}

// Has reports whether chunk idx of root is held (not whether it is intact:
// only Get verifies).
func (s *Store) Has(root manifest.Digest, idx int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lookupLocked(root, idx) != nil
}

// Held returns the held chunks of root as a bitmap of n bits (the file's
// chunk count); chunks at or beyond n are left out, and so are chunks not
// yet durable (see Sync): Held is what a node may announce.
func (s *Store) Held(root manifest.Digest, n int) *bitmap.Bitmap {
	b := bitmap.New(n)
	s.mu.Lock()
	defer s.mu.Unlock()
	for idx, el := range s.roots[root] {
		if !el.Value.(*entry).unsynced {
			b.Set(idx)
		}
	}
	return b
}

// Count returns how many chunks of root are held.
func (s *Store) Count(root manifest.Digest) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.roots[root])
}

// Roots returns the roots of which at least one chunk is held.
func (s *Store) Roots() []manifest.Digest {
	s.mu.Lock()
	defer s.mu.Unlock()
	roots := make([]manifest.Digest, 0, len(s.roots))
	for r := range s.roots {
		roots = append(roots, r)
	}
	return roots
}

// Bytes returns the bytes of chunk data held (trailers, like manifests, do
// not count: 40 bytes a chunk).
func (s *Store) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// MaxBytes returns the store's limit.
func (s *Store) MaxBytes() int64 { return s.maxBytes }

// Evictions returns how many chunks were evicted to respect the limit.
func (s *Store) Evictions() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.evictions
}

// Corruptions returns how many stored chunks failed verification on read
// and were deleted.
func (s *Store) Corruptions() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.corrupt
}

// DropFile removes every chunk and the manifest of root.
func (s *Store) DropFile(root manifest.Digest) error {
	s.mu.Lock()
	var firstErr error
	for idx, el := range s.roots[root] {
		if err := os.Remove(s.chunkPath(root, idx)); err != nil && !errors.Is(err, fs.ErrNotExist) && firstErr == nil {
			firstErr = err
		}
		s.removeLocked(el)
	}
	s.mu.Unlock()
	os.Remove(s.chunkDir(root)) // fails harmlessly if a Put is writing into it
	if err := os.Remove(s.manifestPath(root)); err != nil && !errors.Is(err, fs.ErrNotExist) && firstErr == nil {
		firstErr = err
	}
	s.notify(root)
	if firstErr != nil {
		return fmt.Errorf("drop file %s: %w", root, firstErr)
	}
	return nil
}

// PutManifest stores m, which the caller has validated. Manifests do not
// count against the size limit: they are small next to the chunks.
func (s *Store) PutManifest(m *manifest.Manifest) error {
	data, err := proto.Marshal(m.ToProto())
	if err != nil {
		return fmt.Errorf("put manifest %s: %w", m.Root, err)
	}
	dir := filepath.Join(s.dir, manifestsDir)
	tmp, err := s.writeTempRoom(dir, m.Root.String(), data, nil, true)
	if err != nil {
		return fmt.Errorf("put manifest %s: %w", m.Root, err)
	}
	if err := os.Rename(tmp, s.manifestPath(m.Root)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("put manifest %s: %w", m.Root, err)
	}
	syncPath(dir)
	return nil
}

// GetManifest returns the stored manifest of root, validated like one
// received from another node. A stored manifest that fails validation is
// deleted and reported as ErrCorrupt.
func (s *Store) GetManifest(root manifest.Digest) (*manifest.Manifest, error) {
	path := s.manifestPath(root)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("manifest %s: %w", root, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", root, err)
	}
	var p sppv1.Manifest
	var m *manifest.Manifest
	if err = proto.Unmarshal(data, &p); err == nil {
		m, err = manifest.FromProto(&p)
	}
	if err == nil && m.Root != root {
		err = fmt.Errorf("root %s", m.Root)
	}
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("manifest %s: %w: %v", root, ErrCorrupt, err)
	}
	return m, nil
}
