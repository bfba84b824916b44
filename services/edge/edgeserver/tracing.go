package edgeserver

import (
	"context"
	"net/http"
	"strings"

	"github.com/p2pd/p2pd/internal/telemetry"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// annotate records how a request ended on its span, the one the wrapping
// otelhttp handler started (telemetry.HTTPHandler). Nothing is done for a
// span that does not record: an untraced request pays nothing.
func annotate(r *http.Request, code int, written int64, out outcome) {
	span := trace.SpanFromContext(r.Context())
	if !span.IsRecording() {
		return
	}
	attrs := []attribute.KeyValue{
		telemetry.KeyFile.String(strings.TrimPrefix(r.URL.Path, "/")),
		telemetry.KeyStatus.Int(code),
		telemetry.KeyBytesSent.Int64(written),
	}
	if rg := r.Header.Get("Range"); rg != "" {
		attrs = append(attrs, telemetry.KeyRange.String(rg))
	}
	span.SetAttributes(attrs...)
	if out.err != nil {
		span.RecordError(out.err)
		span.SetStatus(codes.Error, out.err.Error())
	}
}

// memoryRuns records on the request's span the runs of consecutive chunks
// served from the edge's memory cache: one event per run, as a cachenode
// records its hits, never one per chunk.
type memoryRuns struct{ first, n int }

func (m *memoryRuns) hit(ctx context.Context, idx int) {
	if m.n > 0 && idx == m.first+m.n {
		m.n++
		return
	}
	m.flush(ctx)
	m.first, m.n = idx, 1
}

func (m *memoryRuns) flush(ctx context.Context) {
	if m.n == 0 {
		return
	}
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.AddEvent("chunks", trace.WithAttributes(telemetry.KeySource.String("memory"),
			telemetry.KeyFirstChunk.Int(m.first), telemetry.KeyChunks.Int(m.n)))
	}
	m.n = 0
}
