package bitmap

import "testing"

// FuzzDecode: holdings bitmaps arrive from other nodes (Announce) and are
// decoded by the tracker. Any input either fails or yields exactly n bits
// that survive a round trip; none makes Decode allocate beyond n bits.
func FuzzDecode(f *testing.F) {
	b := New(100)
	b.Set(3)
	b.Set(99)
	f.Add(b.Encode(), uint32(100))
	f.Add(b.Encode(), uint32(50))
	f.Add(New(0).Encode(), uint32(0))
	f.Add([]byte("not deflate"), uint32(8))
	f.Add([]byte{}, uint32(1))
	f.Fuzz(func(t *testing.T, data []byte, n uint32) {
		n %= 1 << 20
		got, err := Decode(data, int(n))
		if err != nil {
			return
		}
		if got.Len() != int(n) || got.Count() > int(n) {
			t.Fatalf("Decode(…, %d): %d bits, %d set", n, got.Len(), got.Count())
		}
		again, err := Decode(got.Encode(), int(n))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		for i := range int(n) {
			if got.Has(i) != again.Has(i) {
				t.Fatalf("bit %d changed in a round trip", i)
			}
		}
		if got.Has(int(n)) {
			t.Fatal("a bit beyond the length is set")
		}
	})
}
