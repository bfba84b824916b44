// Package rangeio turns a source of verified chunks into an io.ReadSeeker
// over the whole file, so net/http.ServeContent can answer Range,
// multipart and conditional requests without knowing about chunks.
//
// Sequential reads are served from a streaming read-ahead: a goroutine asks
// the source for a run of chunks (a window) and hands them over through a
// channel of bounded depth. Windows grow like TCP slow start (2 chunks, then
// 4, 8, up to 16) and the next window is only requested once the reader
// shows it goes on reading sequentially, so a short Range request never
// makes the source fetch many chunks nobody will read. A Seek away from the
// stream cancels it. Memory per Reader is bounded by Ahead+2 chunk buffers
// whatever the file size.
package rangeio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/p2pd/p2pd/internal/bufpool"
)

// ChunkSource supplies the verified chunks of one file.
type ChunkSource interface {
	// Stream starts delivering chunks first..last (inclusive), in order.
	// The stream must stop promptly once ctx is done. Implementations may
	// switch between upstream nodes inside one stream, resuming at the
	// first chunk not yet delivered: the Reader only sees chunks in order.
	Stream(ctx context.Context, first, last int) (ChunkStream, error)
}

// ChunkStream is a run of chunks being delivered.
type ChunkStream interface {
	// Next returns the next chunk's index and its verified bytes: stored in
	// buf, or bytes the source shares (a memory cache's), which must then
	// stay valid and unmodified for as long as the Reader may hold them.
	// It returns io.EOF after the last chunk.
	Next(buf []byte) (idx int, data []byte, err error)
	// Close releases the stream; it may be called before the last chunk.
	Close()
}

// Sharer is implemented by a ChunkStream whose chunks are always shared
// bytes (a memory cache's): the Reader then lends it no buffer, so a
// request served from memory holds no buffer of its own at all.
type Sharer interface {
	SharesChunks() bool
}

// Window sizes and read-ahead depth used when Options leaves them zero.
const (
	DefaultMinWindow = 2
	DefaultMaxWindow = 16
	DefaultAhead     = 1
)

// ErrClosed is returned by a Reader used after Close.
var ErrClosed = errors.New("rangeio: reader closed")

// Options tunes a Reader. The zero value is usable.
type Options struct {
	// MinWindow is the first window, in chunks, after a Seek (default 2):
	// a Range request of about one chunk that straddles a chunk boundary
	// is served by one request.
	MinWindow int
	// MaxWindow caps window growth (default 16).
	MaxWindow int
	// Ahead is how many verified chunks may wait in the read-ahead channel
	// (default 1). The Reader holds at most Ahead+2 chunk buffers: the one
	// being read, the queued ones and the one being filled.
	Ahead int
	// Buffers recycles chunk buffers across Readers; nil gives the Reader
	// buffers of its own.
	Buffers *bufpool.Pool
}

func (o *Options) applyDefaults() {
	if o.MinWindow <= 0 {
		o.MinWindow = DefaultMinWindow
	}
	if o.MaxWindow <= 0 {
		o.MaxWindow = DefaultMaxWindow
	}
	if o.MaxWindow < o.MinWindow {
		o.MaxWindow = o.MinWindow
	}
	if o.Ahead <= 0 {
		o.Ahead = DefaultAhead
	}
	if o.Buffers == nil {
		o.Buffers = &bufpool.Pool{}
	}
}

// Reader is an io.ReadSeeker over a file of known size whose chunks come
// from a ChunkSource. Read, Seek and Close may be called from different
// goroutines (ServeContent reads multipart ranges from its own goroutine
// while the handler may Close), but reads are serialised.
type Reader struct {
	src       ChunkSource
	size      int64
	chunkSize int
	chunks    int
	opts      Options
	ctx       context.Context
	cancel    context.CancelFunc

	mu     sync.Mutex // serialises Read, Seek and Close
	pos    int64
	hint   int64    // expected end of reads (exclusive), 0: unknown
	cur    *chunk   // chunk being read, nil when none
	st     *session // read-ahead in progress, nil when none
	closed bool

	// Kept outside mu so the handler can inspect them while a read that
	// still holds mu waits for the network.
	err       atomic.Pointer[error]
	delivered atomic.Int64
}

// NewReader returns a Reader over size bytes cut into chunks of chunkSize.
// Every fetch runs under ctx; Close cancels it.
func NewReader(ctx context.Context, src ChunkSource, size int64, chunkSize int, opts Options) *Reader {
	opts.applyDefaults()
	if chunkSize <= 0 {
		chunkSize = 1
	}
	ctx, cancel := context.WithCancel(ctx)
	return &Reader{
		src:       src,
		size:      size,
		chunkSize: chunkSize,
		chunks:    int((size + int64(chunkSize) - 1) / int64(chunkSize)),
		opts:      opts,
		ctx:       ctx,
		cancel:    cancel,
	}
}

// Size returns the file size.
func (r *Reader) Size() int64 { return r.size }

// Err returns the first error a fetch failed with (never io.EOF), or nil.
func (r *Reader) Err() error {
	if p := r.err.Load(); p != nil {
		return *p
	}
	return nil
}

// Delivered returns how many bytes Read has returned so far. An HTTP
// handler uses it to tell whether content has started to flow.
func (r *Reader) Delivered() int64 { return r.delivered.Load() }

func (r *Reader) fail(err error) error {
	r.err.CompareAndSwap(nil, &err)
	return *r.err.Load()
}

func (r *Reader) chunkLen(i int) int {
	rest := r.size - int64(i)*int64(r.chunkSize)
	return int(min(rest, int64(r.chunkSize)))
}

// HintEnd tells the Reader that reads are expected to stop at offset end
// (exclusive), as for a single Range request. The first window of a
// stream then stops at the chunk holding end-1 instead of running a chunk
// past it. It is only a hint: reading further works as without it.
func (r *Reader) HintEnd(end int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hint = end
}

// Read reads from the chunk under the current position; it returns fewer
// bytes than len(p) at a chunk boundary.
func (r *Reader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, ErrClosed
	}
	if err := r.Err(); err != nil {
		return 0, err
	}
	if r.pos >= r.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	idx := int(r.pos / int64(r.chunkSize))
	if r.cur == nil || r.cur.idx != idx {
		r.release()
		c, err := r.take(idx)
		if err != nil {
			return 0, r.fail(err)
		}
		r.cur = c
	}
	off := int(r.pos - int64(idx)*int64(r.chunkSize))
	n := copy(p, r.cur.data[off:])
	r.pos += int64(n)
	r.delivered.Add(int64(n))
	if off+n == len(r.cur.data) {
		// Fully read: give the buffer back now rather than at the next
		// Read, so a Reader between chunks holds one buffer less.
		r.release()
	}
	return n, nil
}

// View is Read without the copy: it returns up to max bytes at the
// current position, where they are held, and advances past them. The
// bytes stay valid until the next call on the Reader; the caller must not
// modify them. An HTTP handler writes them straight to the connection.
func (r *Reader) View(max int) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	if r.pos >= r.size {
		return nil, io.EOF
	}
	if max <= 0 {
		return nil, nil
	}
	idx := int(r.pos / int64(r.chunkSize))
	if r.cur == nil || r.cur.idx != idx {
		r.release()
		c, err := r.take(idx)
		if err != nil {
			return nil, r.fail(err)
		}
		r.cur = c
	}
	off := int(r.pos - int64(idx)*int64(r.chunkSize))
	n := min(max, len(r.cur.data)-off)
	r.pos += int64(n)
	r.delivered.Add(int64(n))
	// The chunk stays until the next call needs another: the caller is
	// still reading the view.
	return r.cur.data[off : off+n], nil
}

// Seek sets the position for the next Read. It fetches nothing; it cancels
// the read-ahead if the new position is not where the stream goes next.
func (r *Reader) Seek(offset int64, whence int) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, ErrClosed
	}
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = r.pos + offset
	case io.SeekEnd:
		abs = r.size + offset
	default:
		return 0, fmt.Errorf("rangeio: seek: invalid whence %d", whence)
	}
	if abs < 0 {
		return 0, fmt.Errorf("rangeio: seek to negative offset %d", abs)
	}
	r.pos = abs
	if abs >= r.size {
		// Seeking to the end is how ServeContent learns the size: no
		// reason to drop a stream the next Seek may come back to.
		return abs, nil
	}
	idx := int(abs / int64(r.chunkSize))
	if r.cur != nil && r.cur.idx != idx {
		r.release()
	}
	if r.st != nil && r.st.next != idx && (r.cur == nil || r.cur.idx != idx) {
		r.stop()
	}
	return abs, nil
}

// Close cancels any fetch in progress and releases every buffer. A Read
// blocked on the network returns promptly.
func (r *Reader) Close() error {
	r.cancel()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	r.release()
	r.stop()
	return nil
}

// take returns chunk idx from the read-ahead, starting or restarting it
// when it is not heading for idx.
func (r *Reader) take(idx int) (*chunk, error) {
	if r.st != nil && r.st.next != idx {
		r.stop()
	}
	if r.st == nil {
		r.st = r.start(idx)
	}
	st := r.st
	if int(st.wanted.Load()) < idx {
		st.wanted.Store(int64(idx))
		select {
		case st.more <- struct{}{}:
		default:
		}
	}
	c, ok := <-st.ch
	if !ok {
		// The goroutine only stops early when the context ended.
		r.stop()
		if err := r.ctx.Err(); err != nil {
			return nil, fmt.Errorf("chunk %d: %w", idx, err)
		}
		return nil, fmt.Errorf("chunk %d: read-ahead ended early", idx)
	}
	if c.err != nil {
		r.stop()
		return nil, c.err
	}
	st.next = c.idx + 1
	return c, nil
}

func (r *Reader) release() {
	if r.cur != nil {
		r.opts.Buffers.Put(r.cur.buf)
		r.cur = nil
	}
}

// stop cancels the read-ahead and waits for its goroutine, returning the
// queued buffers: the bound on buffers holds across restarts.
func (r *Reader) stop() {
	st := r.st
	if st == nil {
		return
	}
	r.st = nil
	st.cancel()
	for c := range st.ch {
		r.opts.Buffers.Put(c.buf)
	}
}

// chunk is one verified chunk handed from the read-ahead to the reader.
type chunk struct {
	idx  int
	data []byte
	buf  *[]byte // pool buffer holding data, returned on release
	err  error
}

// session is one sequential read-ahead, from a start chunk to the end of
// the file or until cancelled.
type session struct {
	ch     chan *chunk
	next   int           // index the reader takes next
	wanted atomic.Int64  // highest index the reader has asked for
	more   chan struct{} // wakes run after wanted grew
	cancel context.CancelFunc
}

func (r *Reader) start(first int) *session {
	ctx, cancel := context.WithCancel(r.ctx)
	st := &session{
		ch:     make(chan *chunk, r.opts.Ahead),
		more:   make(chan struct{}, 1),
		next:   first,
		cancel: cancel,
	}
	st.wanted.Store(int64(first))
	hintLast := -1
	if r.hint > 0 {
		hintLast = int((r.hint - 1) / int64(r.chunkSize))
	}
	go r.run(ctx, st, first, hintLast)
	return st
}

// run fetches windows of growing size. Each next window is requested only
// once the reader shows it goes on sequentially: after the first window
// when it asks for the chunk past it (a Range request of about one chunk
// then costs one window), after later ones when it takes their last chunk
// (so the next window arrives while that chunk is being written out).
func (r *Reader) run(ctx context.Context, st *session, first, hintLast int) {
	defer close(st.ch)
	send := func(c *chunk) bool {
		select {
		case st.ch <- c:
			return true
		case <-ctx.Done():
			return false
		}
	}
	w := r.opts.MinWindow
	for start := first; start < r.chunks; {
		last := min(start+w-1, r.chunks-1)
		if start == first && hintLast >= first && hintLast < last {
			last = hintLast
		}
		if !r.window(ctx, start, last, send) {
			return
		}
		need := last
		if start == first {
			need = last + 1
		}
		start = last + 1
		w = min(2*w, r.opts.MaxWindow)
		if start >= r.chunks {
			return
		}
		for int(st.wanted.Load()) < need {
			select {
			case <-st.more:
			case <-ctx.Done():
				return
			}
		}
	}
}

// window streams chunks first..last into send; false means stop.
func (r *Reader) window(ctx context.Context, first, last int, send func(*chunk) bool) bool {
	cs, err := r.src.Stream(ctx, first, last)
	if err != nil {
		send(&chunk{err: fmt.Errorf("chunks %d-%d: %w", first, last, err)})
		return false
	}
	defer cs.Close()
	sh, ok := cs.(Sharer)
	shares := ok && sh.SharesChunks()
	for i := first; i <= last; i++ {
		var bp *[]byte
		var buf []byte
		if !shares {
			bp = r.opts.Buffers.Get(r.chunkSize)
			buf = *bp
		}
		idx, data, err := cs.Next(buf)
		switch {
		case err == io.EOF:
			err = fmt.Errorf("chunk %d: stream ended early: %w", i, io.ErrUnexpectedEOF)
		case err != nil:
			err = fmt.Errorf("chunk %d: %w", i, err)
		case idx != i || len(data) != r.chunkLen(i):
			err = fmt.Errorf("chunk %d: source returned chunk %d of %d bytes, want %d bytes", i, idx, len(data), r.chunkLen(i))
		}
		if err != nil {
			r.opts.Buffers.Put(bp)
			send(&chunk{err: err})
			return false
		}
		c := &chunk{idx: idx, data: data, buf: bp}
		if bp != nil && len(data) > 0 && &data[0] != &(*bp)[0] {
			// Shared bytes: read them where they are instead of copying
			// a chunk per request, and give the buffer back.
			r.opts.Buffers.Put(bp)
			c.buf = nil
		}
		if !send(c) {
			r.opts.Buffers.Put(c.buf)
			return false
		}
	}
	return true
}
