package edgeserver

import (
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
