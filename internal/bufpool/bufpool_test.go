package bufpool

import "testing"

func TestPoolSizes(t *testing.T) {
	var p Pool
	for _, n := range []int{0, 1, 255, 256, 257, 16 << 10, 1<<20 + 9, 1 << 23, 1<<23 + 1} {
		b := p.Get(n)
		if len(*b) != n {
			t.Fatalf("Get(%d): length %d", n, len(*b))
		}
		if c := cap(*b); n <= 1<<maxClass && (c < n || c&(c-1) != 0) {
			t.Fatalf("Get(%d): capacity %d, want a power of two >= n", n, c)
		}
		p.Put(b)
		again := p.Get(n)
		if len(*again) != n {
			t.Fatalf("Get(%d) after Put: length %d", n, len(*again))
		}
		p.Put(again)
	}
	if n := p.InUse(); n != 0 {
		t.Fatalf("%d buffers in use after every one was put back", n)
	}
}
