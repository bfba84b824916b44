package rangeio

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/p2pd/p2pd/internal/bufpool"
)

// memSource is an in-memory ChunkSource: the network is the boundary this
// package abstracts, so a fake is the honest unit-test double.
type memSource struct {
	data      []byte
	chunkSize int
	bufs      *bufpool.Pool
	bound     int64 // max buffers in use allowed, checked at every Next

	failAt    int   // Next fails at this chunk (-1: never)
	failErr   error // error for failAt
	streamErr error // Stream itself fails
	blockAt   int   // Next blocks at this chunk until ctx ends (-1: never)
	foreign   bool  // return slices of data instead of filling buf

	mu        sync.Mutex
	windows   [][2]int
	active    int
	maxActive int
	maxInUse  int64
	overBound bool
	closed    int
}

func newMemSource(size, chunkSize int, seed uint64) *memSource {
	data := make([]byte, size)
	rng := rand.New(rand.NewPCG(seed, 1))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	return &memSource{data: data, chunkSize: chunkSize, failAt: -1, blockAt: -1}
}

func (s *memSource) Stream(ctx context.Context, first, last int) (ChunkStream, error) {
	if s.streamErr != nil {
		return nil, s.streamErr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.windows = append(s.windows, [2]int{first, last})
	s.active++
	s.maxActive = max(s.maxActive, s.active)
	return &memStream{s: s, ctx: ctx, next: first, last: last}, nil
}

func (s *memSource) requested() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, w := range s.windows {
		n += w[1] - w[0] + 1
	}
	return n
}

type memStream struct {
	s          *memSource
	ctx        context.Context
	next, last int
	closed     bool
}

func (m *memStream) Next(buf []byte) (int, []byte, error) {
	s := m.s
	if s.bufs != nil {
		s.mu.Lock()
		n := s.bufs.InUse()
		s.maxInUse = max(s.maxInUse, n)
		if s.bound > 0 && n > s.bound {
			s.overBound = true
		}
		s.mu.Unlock()
	}
	if m.next > m.last {
		return 0, nil, io.EOF
	}
	if err := m.ctx.Err(); err != nil {
		return 0, nil, err
	}
	i := m.next
	if i == s.blockAt {
		<-m.ctx.Done()
		return 0, nil, m.ctx.Err()
	}
	if i == s.failAt {
		return 0, nil, s.failErr
	}
	lo := i * s.chunkSize
	hi := min(lo+s.chunkSize, len(s.data))
	m.next++
	if s.foreign {
		return i, s.data[lo:hi], nil
	}
	if cap(buf) < hi-lo {
		buf = make([]byte, hi-lo)
	}
	buf = buf[:hi-lo]
	copy(buf, s.data[lo:hi])
	return i, buf, nil
}

func (m *memStream) Close() {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	if !m.closed {
		m.closed = true
		m.s.active--
		m.s.closed++
	}
}

func TestSequentialReadByteExact(t *testing.T) {
	const cs = 64
	tests := []struct {
		name    string
		size    int
		foreign bool
		windows [][2]int
	}{
		{"empty", 0, false, nil},
		{"one byte", 1, false, [][2]int{{0, 0}}},
		{"chunk minus one", cs - 1, false, [][2]int{{0, 0}}},
		{"one chunk", cs, false, [][2]int{{0, 0}}},
		{"chunk plus one", cs + 1, false, [][2]int{{0, 1}}},
		{"slow start", 40*cs + 5, false, [][2]int{{0, 1}, {2, 5}, {6, 13}, {14, 29}, {30, 40}}},
		{"source memory", 10*cs + 7, true, [][2]int{{0, 1}, {2, 5}, {6, 10}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := newMemSource(tc.size, cs, 1)
			src.foreign = tc.foreign
			bufs := &bufpool.Pool{}
			r := NewReader(context.Background(), src, int64(tc.size), cs, Options{Buffers: bufs})
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatalf("ReadAll: %v", err)
			}
			if !bytes.Equal(got, src.data) {
				t.Fatalf("content differs: got %d bytes, want %d", len(got), len(src.data))
			}
			r.Close()
			if len(src.windows) != len(tc.windows) {
				t.Fatalf("windows %v, want %v", src.windows, tc.windows)
			}
			for i := range tc.windows {
				if src.windows[i] != tc.windows[i] {
					t.Fatalf("windows %v, want %v", src.windows, tc.windows)
				}
			}
			if n := bufs.InUse(); n != 0 {
				t.Errorf("%d buffers still in use after Close", n)
			}
			if src.active != 0 {
				t.Errorf("%d streams not closed", src.active)
			}
		})
	}
}

func TestRandomSeeksAndReads(t *testing.T) {
	const cs = 100
	for _, ahead := range []int{1, 3} {
		src := newMemSource(57*cs+33, cs, 2)
		bufs := &bufpool.Pool{}
		bound := int64(ahead + 2)
		src.bufs, src.bound = bufs, bound
		r := NewReader(context.Background(), src, int64(len(src.data)), cs, Options{Ahead: ahead, Buffers: bufs})
		ref := bytes.NewReader(src.data)
		rng := rand.New(rand.NewPCG(3, uint64(ahead)))
		for op := range 3000 {
			switch rng.IntN(4) {
			case 0:
				var off int64
				whence := rng.IntN(3)
				switch whence {
				case io.SeekStart:
					off = rng.Int64N(int64(len(src.data)) + 10)
				case io.SeekCurrent:
					off = rng.Int64N(4*cs) - 2*cs
				case io.SeekEnd:
					off = -rng.Int64N(int64(len(src.data)))
				}
				want, werr := ref.Seek(off, whence)
				got, gerr := r.Seek(off, whence)
				if (werr != nil) != (gerr != nil) || (werr == nil && got != want) {
					t.Fatalf("op %d: Seek(%d,%d) = %d,%v want %d,%v", op, off, whence, got, gerr, want, werr)
				}
			default:
				n := rng.IntN(3 * cs)
				// Read until n bytes or EOF: Reader may return short reads
				// at chunk boundaries, bytes.Reader does not.
				got, gerr := io.ReadAll(io.LimitReader(r, int64(n)))
				want, werr := io.ReadAll(io.LimitReader(ref, int64(n)))
				if gerr != nil || werr != nil {
					t.Fatalf("op %d: read errors %v / %v", op, gerr, werr)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("op %d: read %d bytes differ from reference (%d bytes)", op, len(got), len(want))
				}
			}
			if n := bufs.InUse(); n > bound {
				t.Fatalf("op %d: %d buffers in use, bound %d", op, n, bound)
			}
		}
		r.Close()
		if src.overBound {
			t.Errorf("ahead %d: buffers in use exceeded %d during a fetch (max %d)", ahead, bound, src.maxInUse)
		}
		if src.maxActive > 1 {
			t.Errorf("ahead %d: %d streams active at once, want 1 (Seek must cancel read-ahead)", ahead, src.maxActive)
		}
		if n := bufs.InUse(); n != 0 {
			t.Errorf("ahead %d: %d buffers in use after Close", ahead, n)
		}
	}
}

func TestBoundedBuffersOnLongRead(t *testing.T) {
	const cs = 32
	src := newMemSource(1000*cs, cs, 4)
	bufs := &bufpool.Pool{}
	src.bufs, src.bound = bufs, 3
	r := NewReader(context.Background(), src, int64(len(src.data)), cs, Options{Buffers: bufs})
	defer r.Close()
	var got bytes.Buffer
	p := make([]byte, 7) // tiny reads: the read-ahead runs far ahead of the reader if unbounded
	for {
		n, err := r.Read(p)
		got.Write(p[:n])
		if n := bufs.InUse(); n > 3 {
			t.Fatalf("%d buffers in use, want at most 3", n)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got.Bytes(), src.data) {
		t.Fatal("content differs")
	}
	if src.overBound {
		t.Fatalf("more than 3 buffers in use during a fetch (max %d)", src.maxInUse)
	}
}

func TestShortRangeFetchesOneWindow(t *testing.T) {
	const cs = 1024
	tests := []struct {
		name      string
		start     int64
		hint      bool
		requested int
	}{
		// A one-chunk Range request straddling a boundary: the first
		// window covers it, nothing more is asked for.
		{"straddling", 40*cs + 512, false, 2},
		{"straddling with hint", 40*cs + 512, true, 2},
		// An aligned one: without a hint the window runs one chunk past.
		{"aligned", 40 * cs, false, 2},
		{"aligned with hint", 40 * cs, true, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := newMemSource(100*cs, cs, 5)
			r := NewReader(context.Background(), src, int64(len(src.data)), cs, Options{})
			if tc.hint {
				r.HintEnd(tc.start + cs)
			}
			if _, err := r.Seek(tc.start, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(io.LimitReader(r, cs))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, src.data[tc.start:tc.start+cs]) {
				t.Fatal("content differs")
			}
			r.Close()
			if n := src.requested(); n != tc.requested {
				t.Errorf("requested %d chunks (%v), want %d", n, src.windows, tc.requested)
			}
		})
	}
}

func TestHintIsOnlyAHint(t *testing.T) {
	const cs = 64
	src := newMemSource(20*cs+3, cs, 6)
	r := NewReader(context.Background(), src, int64(len(src.data)), cs, Options{})
	defer r.Close()
	r.HintEnd(cs / 2) // wrong: the whole file is read
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, src.data) {
		t.Fatalf("ReadAll: %d bytes, %v", len(got), err)
	}
}

func TestErrorPropagation(t *testing.T) {
	const cs = 16
	boom := errors.New("node exploded")
	tests := []struct {
		name      string
		failAt    int
		streamErr error
		seek      int64
		wantData  int // bytes delivered before the error
	}{
		{"first chunk", 0, nil, 0, 0},
		{"mid file", 5, nil, 0, 5 * cs},
		{"after seek", 7, nil, 6*cs + 3, cs - 3},
		{"stream refused", -1, boom, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := newMemSource(20*cs, cs, 6)
			src.failAt, src.failErr, src.streamErr = tc.failAt, boom, tc.streamErr
			bufs := &bufpool.Pool{}
			r := NewReader(context.Background(), src, int64(len(src.data)), cs, Options{Buffers: bufs})
			if _, err := r.Seek(tc.seek, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if !errors.Is(err, boom) {
				t.Fatalf("ReadAll error %v, want %v", err, boom)
			}
			if !errors.Is(r.Err(), boom) {
				t.Fatalf("Err() = %v, want %v", r.Err(), boom)
			}
			if !bytes.Equal(got, src.data[tc.seek:tc.seek+int64(tc.wantData)]) {
				t.Fatalf("got %d bytes before the error, want the %d correct ones", len(got), tc.wantData)
			}
			if r.Delivered() != int64(tc.wantData) {
				t.Fatalf("Delivered() = %d, want %d", r.Delivered(), tc.wantData)
			}
			// The error sticks: no later read may skip the hole.
			if _, err := r.Seek(0, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Read(make([]byte, 1)); !errors.Is(err, boom) {
				t.Fatalf("Read after failure: %v, want %v", err, boom)
			}
			r.Close()
			if n := bufs.InUse(); n != 0 {
				t.Errorf("%d buffers in use after Close", n)
			}
		})
	}
}

func TestBadSourceIsAnError(t *testing.T) {
	const cs = 16
	src := newMemSource(4*cs, cs, 7)
	bad := &shortSource{memSource: src}
	r := NewReader(context.Background(), bad, int64(len(src.data)), cs, Options{})
	defer r.Close()
	if _, err := io.ReadAll(r); err == nil {
		t.Fatal("a source returning a truncated chunk was not reported")
	}
}

// shortSource returns every chunk one byte short.
type shortSource struct{ *memSource }

func (s *shortSource) Stream(ctx context.Context, first, last int) (ChunkStream, error) {
	st, err := s.memSource.Stream(ctx, first, last)
	return shortStream{st}, err
}

type shortStream struct{ ChunkStream }

func (s shortStream) Next(buf []byte) (int, []byte, error) {
	i, d, err := s.ChunkStream.Next(buf)
	if len(d) > 0 {
		d = d[:len(d)-1]
	}
	return i, d, err
}

func TestCloseUnblocksRead(t *testing.T) {
	const cs = 16
	src := newMemSource(10*cs, cs, 8)
	src.blockAt = 1
	bufs := &bufpool.Pool{}
	r := NewReader(context.Background(), src, int64(len(src.data)), cs, Options{Buffers: bufs})
	if _, err := r.Read(make([]byte, cs)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		_, err := r.Read(make([]byte, cs))
		done <- err
	}()
	r.Close()
	if err := <-done; err == nil {
		t.Fatal("Read blocked on the source returned no error after Close")
	}
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	if n := bufs.InUse(); n != 0 {
		t.Errorf("%d buffers in use after Close", n)
	}
}

func TestContextCancelStopsReader(t *testing.T) {
	const cs = 16
	src := newMemSource(10*cs, cs, 9)
	src.blockAt = 2
	ctx, cancel := context.WithCancel(context.Background())
	r := NewReader(ctx, src, int64(len(src.data)), cs, Options{})
	defer r.Close()
	if _, err := io.ReadFull(r, make([]byte, 2*cs)); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read after cancel: %v, want context.Canceled", err)
	}
}
