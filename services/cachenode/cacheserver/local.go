package cacheserver

import (
	"context"
	"fmt"
	"io"

	"github.com/p2pd/p2pd/internal/manifest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// LocalStream delivers chunks to a caller in this process (the single
// binary's edge) exactly as Fetch delivers them over SPP, minus the
// network: hits from memory or the store, misses fetched and coalesced
// like any request's, read-ahead for sequential runs. Chunks come out
// verified by this node; the caller need not hash them again.
type LocalStream struct {
	s      *serving
	p      *pipeline
	i      int
	cancel context.CancelFunc
	closed bool
	err    error
}

// Stream starts delivering chunks first..last (inclusive) of the file
// with the given root. Errors carry gRPC status codes as Fetch's do
// (NotFound: not held and not fetched here). Close must be called.
func (s *serving) Stream(ctx context.Context, root manifest.Digest, first, last int) (*LocalStream, error) {
	fetch := s.cfg.FetchMisses && s.tracker != nil
	m, err := s.manifest(ctx, root, fetch)
	if err != nil {
		return nil, manifestStatus(err)
	}
	if first < 0 || last < first || last >= m.ChunkCount() {
		return nil, status.Errorf(codes.InvalidArgument, "chunks %d-%d out of range: %s has %d chunks", first, last, root, m.ChunkCount())
	}
	ctx, cancel := context.WithCancel(ctx)
	s.members.streamStarted()
	p := &pipeline{s: s, ctx: ctx, m: m, fetch: fetch, relay: true, slots: make([]slot, last-first+1),
		trace: startServe(ctx, root, "local", last-first+1)}
	for i := range p.slots {
		p.slots[i].idx = first + i
	}
	return &LocalStream{s: s, p: p, cancel: cancel}, nil
}

// Next returns the next chunk's index and verified bytes: in buf when
// read from the store with the memory cache off, otherwise shared bytes
// that stay valid (and must not be modified). It returns io.EOF after the
// last chunk.
func (ls *LocalStream) Next(buf []byte) (int, []byte, error) {
	if ls.err != nil {
		return 0, nil, ls.err
	}
	if ls.closed {
		return 0, nil, fmt.Errorf("local stream: closed")
	}
	if ls.i >= len(ls.p.slots) {
		return 0, nil, io.EOF
	}
	bp := &buf
	data, src, err := ls.p.next(ls.i, bp)
	if err != nil {
		ls.err = err
		return 0, nil, err
	}
	ls.p.sent(ls.i, src, len(data))
	idx := ls.p.slots[ls.i].idx
	ls.i++
	return idx, data, nil
}

// Close ends the stream. A stream closed before its last chunk cancels
// the read-ahead it started.
func (ls *LocalStream) Close() {
	if ls.closed {
		return
	}
	ls.closed = true
	var err error
	if ls.i < len(ls.p.slots) {
		err = context.Canceled
	}
	ls.p.trace.end(ls.err)
	ls.p.finish(err)
	ls.cancel()
	ls.s.members.streamEnded()
}
