// Package spptest is the test kit of SPP. Check holds SPP servers to the
// protocol against hostile requests: a Fetch handler called in-process
// (no network, so fuzzing runs fast) with any root and chunk list must
// either refuse the request with a clear status before sending anything,
// or send exactly the chunks asked for, in order, each whole and correct.
// Node (node.go) is an SPP node on a real gRPC server on loopback serving
// files from memory, honest or misbehaving on demand, for the tests of
// SPP's clients.
package spptest

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/spp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Fetcher is the server side of SPP's Fetch.
type Fetcher interface {
	Fetch(*sppv1.FetchRequest, grpc.ServerStreamingServer[sppv1.FetchResponse]) error
}

// Request builds a Fetch request from fuzzer input: rootMode 0 names the
// real root, 1 the raw bytes given, 2 the real root with one bit flipped;
// chunks are little-endian uint32s, the list repeated repeat times (so a
// small input can ask for a huge list).
func Request(m *manifest.Manifest, rootMode uint8, raw, chunks []byte, repeat uint16) *sppv1.FetchRequest {
	req := &sppv1.FetchRequest{Requester: "fuzz"}
	switch rootMode % 3 {
	case 0:
		req.Root = m.Root[:]
	case 1:
		req.Root = raw
	case 2:
		r := m.Root
		r[int(repeat)%len(r)] ^= 1 << (rootMode % 8)
		req.Root = r[:]
	}
	var one []uint32
	for i := 0; i+4 <= len(chunks); i += 4 {
		one = append(one, binary.LittleEndian.Uint32(chunks[i:]))
	}
	for range max(1, int(repeat)%(2*spp.MaxChunksPerFetch)) {
		if len(one) == 0 || len(req.Chunks)+len(one) > 4*spp.MaxChunksPerFetch {
			break
		}
		req.Chunks = append(req.Chunks, one...)
	}
	return req
}

// Check runs req against f and returns an error if the outcome breaks
// SPP's rules for a server that holds the file of m (data) whole or in
// part. held reports whether the server holds a chunk (a refusal with
// NOT_FOUND is then allowed for chunks it does not).
func Check(ctx context.Context, f Fetcher, m *manifest.Manifest, data []byte, req *sppv1.FetchRequest, held func(int) bool) error {
	s := &stream{ctx: ctx}
	err := f.Fetch(req, s)
	code := status.Code(err)
	valid := bytes.Equal(req.Root, m.Root[:]) && len(req.Chunks) <= spp.MaxChunksPerFetch
	allHeld := true
	for _, c := range req.Chunks {
		if int64(c) >= int64(m.ChunkCount()) {
			valid = false
		} else if !held(int(c)) {
			allHeld = false
		}
	}
	switch {
	case !valid && code != codes.InvalidArgument && code != codes.NotFound:
		return fmt.Errorf("invalid request (root %x, %d chunks) answered %v", req.Root, len(req.Chunks), err)
	case !valid && len(s.sent) > 0:
		return fmt.Errorf("invalid request answered with %d pieces before %v", len(s.sent), err)
	case valid && allHeld && err != nil:
		return fmt.Errorf("valid request for held chunks failed: %v", err)
	case valid && err != nil && code != codes.NotFound && code != codes.Unavailable:
		return fmt.Errorf("valid request failed with %v", err)
	}
	// Whatever was sent must be a prefix of the chunks asked for, each
	// whole and correct; a successful stream must be all of them.
	i, off := 0, 0
	for _, p := range s.sent {
		if i >= len(req.Chunks) {
			return fmt.Errorf("piece of chunk %d beyond the %d chunks asked for", p.Chunk, len(req.Chunks))
		}
		idx := int(req.Chunks[i])
		if int(p.Chunk) != idx || int(p.Offset) != off || len(p.Data) > spp.PieceSize {
			return fmt.Errorf("piece chunk %d offset %d (%d bytes), want chunk %d offset %d", p.Chunk, p.Offset, len(p.Data), idx, off)
		}
		want := data[m.ChunkOffset(idx)+int64(off):][:len(p.Data)]
		if !bytes.Equal(p.Data, want) {
			return fmt.Errorf("chunk %d offset %d: wrong bytes", idx, off)
		}
		off += len(p.Data)
		if off == m.ChunkLen(idx) {
			i, off = i+1, 0
		}
	}
	if off != 0 {
		return fmt.Errorf("chunk %d cut after %d bytes", req.Chunks[i], off)
	}
	if err == nil && i != len(req.Chunks) {
		return fmt.Errorf("stream ended after %d of %d chunks without an error", i, len(req.Chunks))
	}
	return nil
}

// stream collects what a Fetch handler sends.
type stream struct {
	grpc.ServerStream // nil: handlers use Send, SendHeader and Context only
	ctx               context.Context
	sent              []*sppv1.FetchResponse
}

func (s *stream) Context() context.Context { return s.ctx }

// SendHeader takes the response headers (spp.Accepted) and drops them.
func (s *stream) SendHeader(metadata.MD) error { return nil }

func (s *stream) Send(r *sppv1.FetchResponse) error {
	// Handlers reuse the message and its buffer between sends.
	s.sent = append(s.sent, &sppv1.FetchResponse{Chunk: r.Chunk, Offset: r.Offset, Data: bytes.Clone(r.Data)})
	return nil
}
