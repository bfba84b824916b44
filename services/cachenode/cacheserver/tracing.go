package cacheserver

import (
	"context"

	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/telemetry"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// serveTrace records on a Fetch RPC's span (started by the gRPC stats
// handler) which chunks were hits and which were fetched: one event per
// run of consecutive chunks that came from the same source, totals as
// attributes. Per chunk it costs a comparison, and nothing at all when the
// span does not record.
type serveTrace struct {
	span trace.Span
	on   bool

	src          string // current run
	first, n     int
	hits, misses int
	bytes        int64
}

func startServe(ctx context.Context, root manifest.Digest, requester string, chunks int) *serveTrace {
	t := &serveTrace{span: trace.SpanFromContext(ctx)}
	if t.on = t.span.IsRecording(); t.on {
		t.span.SetAttributes(telemetry.KeyRoot.String(root.String()),
			telemetry.KeyRequester.String(requester), telemetry.KeyChunks.Int(chunks))
	}
	return t
}

// chunk records that chunk idx was sent, size bytes from src.
func (t *serveTrace) chunk(idx int, src string, size int) {
	if !t.on {
		return
	}
	if src == sourceLocal {
		t.hits++
	} else {
		t.misses++
	}
	t.bytes += int64(size)
	if t.n > 0 && src == t.src && idx == t.first+t.n {
		t.n++
		return
	}
	t.flush()
	t.src, t.first, t.n = src, idx, 1
}

func (t *serveTrace) flush() {
	if t.n == 0 {
		return
	}
	t.span.AddEvent("chunks", trace.WithAttributes(telemetry.KeySource.String(t.src),
		telemetry.KeyFirstChunk.Int(t.first), telemetry.KeyChunks.Int(t.n)))
	t.n = 0
}

// end records the totals; err is why serving stopped early.
func (t *serveTrace) end(err error) {
	if !t.on {
		return
	}
	t.flush()
	attrs := []attribute.KeyValue{
		telemetry.KeyHits.Int(t.hits),
		telemetry.KeyMisses.Int(t.misses),
		telemetry.KeyBytes.Int64(t.bytes),
	}
	switch {
	case t.misses == 0 && t.hits > 0:
		attrs = append(attrs, telemetry.KeyCache.String("hit"))
	case t.hits == 0 && t.misses > 0:
		attrs = append(attrs, telemetry.KeyCache.String("miss"))
	case t.hits > 0:
		attrs = append(attrs, telemetry.KeyCache.String("partial"))
	}
	t.span.SetAttributes(attrs...)
	if err != nil {
		t.span.SetStatus(codes.Error, err.Error())
	}
}
