package edgeserver

import (
	"context"
	"fmt"
	"io"

	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/rangeio"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// LocalFunc opens a stream of chunks first..last of the file with the
// given root from a node in the same process (the single binary's
// cachenode or origin). Its chunks are verified by that node already, so
// the edge neither hashes them again nor crosses a socket. Errors carry
// gRPC status codes as SPP's do.
type LocalFunc func(ctx context.Context, root manifest.Digest, first, last int) (rangeio.ChunkStream, error)

// open returns the stream of chunks first..last of m: from the memory
// cache when it has them, the rest from the local node or the network,
// cached once verified.
func (s *Server) open(ctx context.Context, m *manifest.Manifest, first, last int) rangeio.ChunkStream {
	if s.hot == nil && s.cfg.Local == nil {
		return &failoverStream{s: s, m: m, ctx: ctx, next: first, last: last}
	}
	return &hotStream{s: s, m: m, ctx: ctx, next: first, last: last}
}

// hotStream delivers chunks next..last in order: memory-cache hits as
// they are (shared bytes, which the reader keeps without copying), misses
// from an upstream stream opened for the run of misses ahead.
type hotStream struct {
	s    *Server
	m    *manifest.Manifest
	ctx  context.Context
	next int
	last int

	up     rangeio.ChunkStream // upstream for misses, nil when none
	upNext int                 // the chunk up delivers next
	hits   memoryRuns
}

// Next implements rangeio.ChunkStream; it never uses buf.
func (h *hotStream) Next(_ []byte) (int, []byte, error) {
	if h.next > h.last {
		return 0, nil, io.EOF
	}
	if err := h.ctx.Err(); err != nil {
		return 0, nil, err
	}
	if data, ok := h.s.hot.Get(h.m.Root, h.next); ok {
		h.s.metrics.memoryHits.Inc()
		h.hits.hit(h.ctx, h.next)
		if h.up != nil && h.upNext == h.next {
			h.closeUp() // it would send this chunk again
		}
		h.next++
		return h.next - 1, data, nil
	}
	if h.up == nil || h.upNext != h.next {
		h.hits.flush(h.ctx)
		h.closeUp()
		// The run of misses ahead: a later hit ends it.
		end := h.next
		for end < h.last && !h.s.hot.Contains(h.m.Root, end+1) {
			end++
		}
		up, err := h.upstream(h.next, end)
		if err != nil {
			return 0, nil, err
		}
		h.up, h.upNext = up, h.next
	}
	// A buffer of its own, which the cache keeps or the local node fills
	// from memory (see SharesChunks).
	idx, data, err := h.up.Next(nil)
	if err == io.EOF {
		h.closeUp()
		return 0, nil, fmt.Errorf("chunk %d: %w", h.next, io.ErrUnexpectedEOF)
	}
	if err != nil {
		h.closeUp()
		return 0, nil, h.localError(err)
	}
	h.s.hot.Add(h.m.Root, idx, data)
	h.next, h.upNext = idx+1, idx+1
	return idx, data, nil
}

// upstream opens the run first..last at the local node or the network.
func (h *hotStream) upstream(first, last int) (rangeio.ChunkStream, error) {
	if h.s.cfg.Local == nil {
		return &failoverStream{s: h.s, m: h.m, ctx: h.ctx, next: first, last: last}, nil
	}
	up, err := h.s.cfg.Local(h.ctx, h.m.Root, first, last)
	if err != nil {
		return nil, h.localError(err)
	}
	return up, nil
}

// localError gives a local node's error the meaning a failed SPP stream
// has, so the viewer gets the same status either way.
func (h *hotStream) localError(err error) error {
	if h.s.cfg.Local == nil || h.ctx.Err() != nil {
		return err
	}
	if status.Code(err) == codes.NotFound {
		return fmt.Errorf("chunk %d: %w: %w", h.next, errNotHeld, err)
	}
	return fmt.Errorf("chunk %d: %w: %w", h.next, errUpstream, err)
}

func (h *hotStream) closeUp() {
	if h.up != nil {
		h.up.Close()
		h.up = nil
	}
}

// Close implements rangeio.ChunkStream.
func (h *hotStream) Close() {
	h.hits.flush(h.ctx)
	h.closeUp()
}

// SharesChunks implements rangeio.Sharer: hits are the memory cache's
// bytes, misses land in buffers of their own (kept by the cache), and a
// local node hands out its memory cache's bytes or fresh buffers.
func (h *hotStream) SharesChunks() bool { return true }
