package telemetry

import (
	"context"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
)

// Attribute keys of p2pd's spans; docs/operations.md lists where each
// appears.
const (
	KeyFile       = attribute.Key("p2pd.file")        // published name
	KeyRoot       = attribute.Key("p2pd.root")        // file root digest, hex
	KeyRange      = attribute.Key("p2pd.range")       // the viewer's Range header
	KeyStatus     = attribute.Key("p2pd.status")      // edge status as counted (499: the viewer left)
	KeyBytesSent  = attribute.Key("p2pd.bytes_sent")  // response body bytes sent to the viewer
	KeyRequester  = attribute.Key("p2pd.requester")   // node id that asked
	KeyNode       = attribute.Key("p2pd.node")        // node id fetched from
	KeySource     = attribute.Key("p2pd.source")      // local, peer, origin; cachenode for an edge's fetch
	KeyChunk      = attribute.Key("p2pd.chunk.index") // the chunk of a digest failure
	KeyFirstChunk = attribute.Key("p2pd.chunk.first") // first chunk index of a run
	KeyChunks     = attribute.Key("p2pd.chunk.count") // chunks asked for
	KeyDelivered  = attribute.Key("p2pd.chunk.delivered")
	KeyHits       = attribute.Key("p2pd.chunk.hits")   // chunks served from the local store
	KeyMisses     = attribute.Key("p2pd.chunk.misses") // chunks fetched from a peer or the origin
	KeyCache      = attribute.Key("p2pd.cache")        // hit, miss or partial
	KeyBytes      = attribute.Key("p2pd.bytes")
	KeyRate       = attribute.Key("p2pd.rate_bytes_per_second")
	KeyCandidates = attribute.Key("p2pd.candidates") // nodes Locate considered
	KeyChosen     = attribute.Key("p2pd.chosen")     // best-ranked node of each chunk, distinct
)

// Tracer returns p2pd's tracer from the global provider.
func Tracer() trace.Tracer { return otel.Tracer(ScopeName) }

// traced leaves health checks out of tracing: load balancers and
// orchestrators call them every few seconds.
func traced(info *stats.RPCTagInfo) bool {
	return !strings.HasPrefix(info.FullMethodName, "/grpc.health.v1.")
}

// GRPCServerOption traces every RPC a server answers, as a child of the
// caller's span when the call carries W3C trace context.
func GRPCServerOption() grpc.ServerOption {
	return grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithFilter(traced)))
}

// GRPCDialOption traces every RPC a client makes and passes the trace
// context on.
func GRPCDialOption() grpc.DialOption {
	return grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithFilter(traced)))
}

// HTTPHandler traces every request h answers: the span continues the
// caller's trace when the request carries a W3C traceparent header (a
// player or proxy that traces joins the trace) and is in the request's
// context for h.
func HTTPHandler(h http.Handler, operation string) http.Handler {
	return otelhttp.NewHandler(h, operation)
}

// TraceID returns the W3C trace id of the request's span, "" when there is
// none. It is the edge's X-Trace-Id hook.
func TraceID(r *http.Request) string {
	sc := trace.SpanContextFromContext(r.Context())
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}

// Fetch is the span of one SPP fetch stream: a run of chunks from one
// node. Its cost is per run, never per chunk or piece.
type Fetch struct {
	span  trace.Span
	start time.Time
}

// StartFetch starts the span of a fetch of count chunks from first out of
// node; source, if known, says what node is (peer, origin). The returned
// context carries the span: pass it to spp.Open so digest failures are
// recorded on it.
func StartFetch(ctx context.Context, node, source string, first, count int) (context.Context, Fetch) {
	ctx, span := Tracer().Start(ctx, "spp.fetch")
	if span.IsRecording() {
		span.SetAttributes(KeyNode.String(node), KeyFirstChunk.Int(first), KeyChunks.Int(count))
		if source != "" {
			span.SetAttributes(KeySource.String(source))
		}
	}
	return ctx, Fetch{span: span, start: time.Now()}
}

// End ends the span with what the stream delivered; err is why it stopped
// early, nil when it delivered everything or the reader had enough.
func (f Fetch) End(delivered int, bytes int64, err error) {
	if f.span == nil {
		return
	}
	if f.span.IsRecording() {
		attrs := []attribute.KeyValue{KeyDelivered.Int(delivered), KeyBytes.Int64(bytes)}
		if d := time.Since(f.start); d > 0 && bytes > 0 {
			attrs = append(attrs, KeyRate.Int64(int64(float64(bytes)/d.Seconds())))
		}
		f.span.SetAttributes(attrs...)
		if err != nil {
			f.span.RecordError(err)
			f.span.SetStatus(codes.Error, err.Error())
		}
	}
	f.span.End()
}

// DigestFailure records on the span in ctx that chunk idx of root did not
// match its digest.
func DigestFailure(ctx context.Context, root string, idx int) {
	span := trace.SpanFromContext(ctx)
	if span.IsRecording() {
		span.AddEvent("digest mismatch", trace.WithAttributes(KeyRoot.String(root), KeyChunk.Int(idx)))
	}
}
