package rangeio

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/p2pd/p2pd/internal/bufpool"
)

// View reads in place what Read copies, from pool buffers and from shared
// source bytes alike, and keeps the buffer bound.
func TestViewMatchesRead(t *testing.T) {
	for _, foreign := range []bool{false, true} {
		src := newMemSource(10*1000+7, 1000, 3)
		src.foreign = foreign
		src.bufs = &bufpool.Pool{}
		src.bound = DefaultAhead + 2
		r := NewReader(context.Background(), src, int64(len(src.data)), src.chunkSize, Options{Buffers: src.bufs})
		if _, err := r.Seek(1500, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		var got []byte
		for _, max := range []int{10, 400, 1 << 20, 3} {
			b, err := r.View(max)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, b...)
		}
		rest := make([]byte, 2500)
		n, err := io.ReadFull(r, rest)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rest[:n]...)
		for {
			b, err := r.View(777)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, b...)
		}
		if !bytes.Equal(got, src.data[1500:]) {
			t.Fatalf("foreign=%v: View and Read gave wrong bytes", foreign)
		}
		if r.Delivered() != int64(len(src.data)-1500) {
			t.Fatalf("delivered %d, want %d", r.Delivered(), len(src.data)-1500)
		}
		r.Close()
		if src.overBound || src.bufs.InUse() != 0 {
			t.Fatalf("foreign=%v: buffers over the bound (%v) or not returned (%d in use)", foreign, src.overBound, src.bufs.InUse())
		}
	}
}

// sharingSource hands out its own bytes and says so.
type sharingSource struct{ *memSource }

func (s sharingSource) Stream(ctx context.Context, first, last int) (ChunkStream, error) {
	cs, err := s.memSource.Stream(ctx, first, last)
	return sharingStream{cs}, err
}

type sharingStream struct{ ChunkStream }

func (sharingStream) SharesChunks() bool { return true }

// A stream that shares its chunks is lent no buffer at all.
func TestSharerIsLentNoBuffer(t *testing.T) {
	src := newMemSource(20*1000, 1000, 4)
	src.foreign = true
	src.bufs = &bufpool.Pool{}
	src.bound = 0
	r := NewReader(context.Background(), sharingSource{src}, int64(len(src.data)), src.chunkSize, Options{Buffers: src.bufs})
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, src.data) {
		t.Fatalf("read: %v", err)
	}
	if src.maxInUse != 0 {
		t.Fatalf("%d buffers lent to a sharing stream", src.maxInUse)
	}
}
