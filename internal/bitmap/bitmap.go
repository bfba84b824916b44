// Package bitmap is the set of chunks a node holds for one file, with the
// compact encoding the tracker stores in etcd.
package bitmap

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"math/bits"
)

// Bitmap is a fixed-length bit set; bit i is bit i%8 of byte i/8.
type Bitmap struct {
	n    int
	bits []byte
}

// New returns an empty bitmap of n bits.
func New(n int) *Bitmap { return &Bitmap{n: n, bits: make([]byte, (n+7)/8)} }

// Of returns a bitmap of n bits with bits set (out-of-range ones ignored).
func Of(n int, set ...int) *Bitmap {
	b := New(n)
	for _, i := range set {
		b.Set(i)
	}
	return b
}

// Len returns the number of bits.
func (b *Bitmap) Len() int { return b.n }

// Set sets bit i; out-of-range bits are ignored.
func (b *Bitmap) Set(i int) {
	if i >= 0 && i < b.n {
		b.bits[i/8] |= 1 << (i % 8)
	}
}

// Clear clears bit i.
func (b *Bitmap) Clear(i int) {
	if i >= 0 && i < b.n {
		b.bits[i/8] &^= 1 << (i % 8)
	}
}

// Has reports whether bit i is set.
func (b *Bitmap) Has(i int) bool {
	return i >= 0 && i < b.n && b.bits[i/8]&(1<<(i%8)) != 0
}

// Count returns the number of set bits.
func (b *Bitmap) Count() int {
	c := 0
	for _, x := range b.bits {
		c += bits.OnesCount8(x)
	}
	return c
}

// Clone returns a copy.
func (b *Bitmap) Clone() *Bitmap {
	return &Bitmap{n: b.n, bits: bytes.Clone(b.bits)}
}

// Encode returns the DEFLATE-compressed bit bytes. Runs of held or missing
// chunks, the common case, compress to almost nothing.
func (b *Bitmap) Encode() []byte {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestSpeed)
	w.Write(b.bits)
	w.Close()
	return buf.Bytes()
}

// Decode decodes an encoded bitmap of n bits. It refuses input that
// inflates beyond n bits, so a hostile value cannot exhaust memory.
func Decode(data []byte, n int) (*Bitmap, error) {
	if n < 0 {
		return nil, fmt.Errorf("bitmap: negative length %d", n)
	}
	b := New(n)
	r := flate.NewReader(bytes.NewReader(data))
	defer r.Close()
	if _, err := io.ReadFull(r, b.bits); err != nil {
		return nil, fmt.Errorf("bitmap of %d bits: %w", n, err)
	}
	var extra [1]byte
	if k, _ := r.Read(extra[:]); k > 0 {
		return nil, fmt.Errorf("bitmap of %d bits: trailing data", n)
	}
	if n%8 != 0 && len(b.bits) > 0 {
		b.bits[len(b.bits)-1] &= byte(1<<(n%8)) - 1
	}
	return b, nil
}
