package cacheserver

import (
	"bytes"
	"context"
	"testing"

	"github.com/p2pd/p2pd/internal/chunkstore"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/spp/spptest"
)

// FuzzFetch: a cachenode without a tracker holding part of a file gets
// Fetch requests with any root and chunk list (out of range, huge,
// repeated, unknown roots). It refuses invalid ones before sending a byte,
// serves held chunks whole and in order, and answers NOT_FOUND for the
// rest. See spptest.Check for the rules.
func FuzzFetch(f *testing.F) {
	data := make([]byte, 5*testChunkSize+100)
	for i := range data {
		data[i] = byte(i*7 + i/251)
	}
	m, err := manifest.Build(context.Background(), bytes.NewReader(data), int64(len(data)), testChunkSize, 1)
	if err != nil {
		f.Fatal(err)
	}
	store, err := chunkstore.Open(f.TempDir(), 1<<30)
	if err != nil {
		f.Fatal(err)
	}
	if err := store.PutManifest(m); err != nil {
		f.Fatal(err)
	}
	held := func(i int) bool { return i < 3 }
	for i := range m.ChunkCount() {
		if held(i) {
			if err := store.Put(m.Root, i, data[m.ChunkOffset(i):][:m.ChunkLen(i)], m.Digests[i]); err != nil {
				f.Fatal(err)
			}
		}
	}
	srv, err := New(Config{NodeID: "fuzz", FetchMisses: true}, store, nil, nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(srv.Close)

	f.Add(uint8(0), []byte(nil), []byte{0, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0}, uint16(1))
	f.Add(uint8(0), []byte(nil), []byte{5, 0, 0, 0}, uint16(1)) // not held
	f.Add(uint8(0), []byte(nil), []byte{6, 0, 0, 0}, uint16(1)) // out of range
	f.Add(uint8(0), []byte(nil), []byte{0xff, 0xff, 0xff, 0xff}, uint16(1))
	f.Add(uint8(0), []byte(nil), []byte{0, 0, 0, 0}, uint16(5000))  // a huge list
	f.Add(uint8(1), []byte{1, 2, 3}, []byte{0, 0, 0, 0}, uint16(1)) // short root
	f.Add(uint8(2), []byte(nil), []byte{0, 0, 0, 0}, uint16(7))     // unknown root
	f.Add(uint8(0), []byte(nil), []byte(nil), uint16(0))            // nothing asked
	f.Fuzz(func(t *testing.T, rootMode uint8, raw, chunks []byte, repeat uint16) {
		req := spptest.Request(m, rootMode, raw, chunks, repeat)
		if err := spptest.Check(context.Background(), srv, m, data, req, held); err != nil {
			t.Fatal(err)
		}
	})
}
