package originserver

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/p2pd/p2pd/internal/spp/spptest"
)

// FuzzFetch: the origin gets Fetch requests with any root and chunk list
// (out of range, huge, repeated, unknown roots). It refuses invalid ones
// before sending a byte and serves valid ones whole and in order. See
// spptest.Check for the rules.
func FuzzFetch(f *testing.F) {
	dir := f.TempDir()
	data := make([]byte, 3*testChunk+17)
	for i := range data {
		data[i] = byte(i*13 + i/253)
	}
	if err := os.WriteFile(filepath.Join(dir, "a.mp4"), data, 0o644); err != nil {
		f.Fatal(err)
	}
	o, err := New(Config{MediaDir: dir, ChunkSize: testChunk, Advertise: "fuzz"}, nil)
	if err != nil {
		f.Fatal(err)
	}
	if err := o.Scan(context.Background()); err != nil {
		f.Fatal(err)
	}
	m, _ := o.Lookup("a.mp4")
	f.Add(uint8(0), []byte(nil), []byte{0, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0}, uint16(1))
	f.Add(uint8(0), []byte(nil), []byte{4, 0, 0, 0}, uint16(1))    // out of range
	f.Add(uint8(0), []byte(nil), []byte{0, 0, 0, 0}, uint16(5000)) // a huge list
	f.Add(uint8(1), []byte{1}, []byte{0, 0, 0, 0}, uint16(1))      // short root
	f.Add(uint8(2), []byte(nil), []byte{0, 0, 0, 0}, uint16(3))    // unknown root
	f.Fuzz(func(t *testing.T, rootMode uint8, raw, chunks []byte, repeat uint16) {
		req := spptest.Request(m, rootMode, raw, chunks, repeat)
		if err := spptest.Check(context.Background(), o, m, data, req, func(int) bool { return true }); err != nil {
			t.Fatal(err)
		}
	})
}
