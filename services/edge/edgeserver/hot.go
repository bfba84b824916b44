package edgeserver

import (
	"context"
	"errors"
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
// cache when it has them, the rest from the local node or the network
// (one fetch per chunk however many viewers miss it, see share.go),
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

	up     rangeio.ChunkStream // the local node's stream for misses, nil when none
	upNext int                 // the chunk up delivers next
	run    *sharedRun          // the network fetch of misses this stream holds, nil when none
	hits   memoryRuns
}

// Next implements rangeio.ChunkStream; it never uses buf.
func (h *hotStream) Next(_ []byte) (int, []byte, error) {
	if h.next > h.last {
		return 0, nil, io.EOF
	}
	for attempt := 0; ; attempt++ {
		if err := h.ctx.Err(); err != nil {
			return 0, nil, err
		}
		if data, ok := h.s.hot.Get(h.m.Root, h.next); ok {
			// A chunk the run this stream holds fetched ahead of it is
			// the viewer's own fetch, not a hit.
			if h.run == nil || !h.run.fetched(h.next) {
				h.s.metrics.memoryHits.Inc()
				h.hits.hit(h.ctx, h.next)
			}
			if h.up != nil && h.upNext == h.next {
				h.closeUp() // it would send this chunk again
			}
			h.next++
			return h.next - 1, data, nil
		}
		h.hits.flush(h.ctx)
		if h.s.cfg.Local != nil {
			return h.local()
		}
		// Over the network: share the fetch with any viewer missing the
		// same chunk.
		if h.run == nil || h.next < h.run.first || h.next > h.run.last {
			h.releaseRun()
			if h.run = h.s.joinRun(h.ctx, h.m, h.next, h.missesFrom(h.next)); h.run == nil {
				continue // it just came: a hit
			}
		}
		data, err := h.run.get(h.ctx, h.next)
		if err == nil {
			h.next++
			return h.next - 1, data, nil
		}
		if h.ctx.Err() != nil {
			return 0, nil, h.ctx.Err()
		}
		if !errors.Is(err, errAbandoned) && !errors.Is(err, errGone) {
			return 0, nil, err
		}
		h.releaseRun()
		if attempt >= 3 {
			return 0, nil, fmt.Errorf("chunk %d: %w: %w", h.next, errUpstream, err)
		}
		// The run went away under this viewer (its other viewers left
		// just as it joined, or the chunk left the memory cache): look
		// again, and fetch it anew if need be.
	}
}

// missesFrom returns the end of the run of misses from first: a later hit
// ends it.
func (h *hotStream) missesFrom(first int) int {
	end := first
	for end < h.last && !h.s.hot.Contains(h.m.Root, end+1) {
		end++
	}
	return end
}

// local serves a miss from the node in this process.
func (h *hotStream) local() (int, []byte, error) {
	if h.up == nil || h.upNext != h.next {
		h.closeUp()
		up, err := h.upstream(h.next, h.missesFrom(h.next))
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

// releaseRun lets go of the shared run this stream held, if any.
func (h *hotStream) releaseRun() {
	if h.run != nil {
		h.run.release()
		h.run = nil
	}
}

// upstream opens the run first..last at the local node.
func (h *hotStream) upstream(first, last int) (rangeio.ChunkStream, error) {
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
	h.releaseRun()
}

// SharesChunks implements rangeio.Sharer: hits are the memory cache's
// bytes, misses land in buffers of their own (kept by the cache), and a
// local node hands out its memory cache's bytes or fresh buffers.
func (h *hotStream) SharesChunks() bool { return true }
