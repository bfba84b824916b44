package bitmap

import "testing"

func TestRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 7, 8, 9, 1000, 100_000} {
		b := New(n)
		for i := 0; i < n; i += 3 {
			b.Set(i)
		}
		got, err := Decode(b.Encode(), n)
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		for i := 0; i < n; i++ {
			if got.Has(i) != (i%3 == 0) {
				t.Fatalf("n=%d: bit %d = %v", n, i, got.Has(i))
			}
		}
		if got.Count() != (n+2)/3 {
			t.Fatalf("n=%d: count %d", n, got.Count())
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	b := New(100)
	b.Set(99)
	enc := b.Encode()
	if _, err := Decode(enc, 50); err == nil {
		t.Error("decoding 100 bits as 50: no error")
	}
	if _, err := Decode(enc, 200); err == nil {
		t.Error("decoding 100 bits as 200: no error")
	}
	if _, err := Decode([]byte("not deflate"), 8); err == nil {
		t.Error("garbage: no error")
	}
}

func TestOutOfRangeIgnored(t *testing.T) {
	b := New(10)
	b.Set(-1)
	b.Set(10)
	if b.Count() != 0 || b.Has(10) || b.Has(-1) {
		t.Fatal("out-of-range bits changed the bitmap")
	}
}
