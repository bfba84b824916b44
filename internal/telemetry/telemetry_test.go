package telemetry

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// The tests set the process's OpenTelemetry globals: none runs in parallel.

func TestExporterNames(t *testing.T) {
	for _, tc := range []struct {
		env, disabled string
		want          string
		err           bool
	}{
		{env: "", want: ""},
		{env: "none", want: ""},
		{env: "otlp", want: "otlp"},
		{env: " OTLP , console", want: "otlp,console"},
		{env: "otlp", disabled: "true", want: ""},
		{env: "zipkin", err: true},
	} {
		t.Setenv("OTEL_TRACES_EXPORTER", tc.env)
		t.Setenv("OTEL_SDK_DISABLED", tc.disabled)
		got, err := exporterNames()
		if (err != nil) != tc.err || strings.Join(got, ",") != tc.want {
			t.Errorf("OTEL_TRACES_EXPORTER=%q: %v, %v; want %q (error %v)", tc.env, got, err, tc.want, tc.err)
		}
	}
}

func TestSamplerFromEnv(t *testing.T) {
	for _, tc := range []struct {
		sampler, arg string
		exporting    bool
		want         string // prefix of the description
		err          bool
	}{
		{exporting: true, want: "ParentBased{root:TraceIDRatioBased{1}"},
		{exporting: true, arg: "0.25", want: "ParentBased{root:TraceIDRatioBased{0.25}"},
		{exporting: false, want: "ParentBased{root:AlwaysOffSampler"},
		{sampler: "always_on", want: "AlwaysOnSampler"},
		{sampler: "traceidratio", arg: "0.5", want: "TraceIDRatioBased{0.5}"},
		{sampler: "parentbased_always_off", want: "ParentBased{root:AlwaysOffSampler"},
		{sampler: "parentbased_traceidratio", arg: "2", err: true},
		{sampler: "sometimes", err: true},
	} {
		t.Setenv("OTEL_TRACES_SAMPLER", tc.sampler)
		t.Setenv("OTEL_TRACES_SAMPLER_ARG", tc.arg)
		s, err := samplerFromEnv(tc.exporting)
		if (err != nil) != tc.err {
			t.Errorf("%q %q: error %v", tc.sampler, tc.arg, err)
			continue
		}
		if err == nil && !strings.HasPrefix(s.Description(), tc.want) {
			t.Errorf("%q %q: %s, want %s...", tc.sampler, tc.arg, s.Description(), tc.want)
		}
	}
}

func TestQuietRoots(t *testing.T) {
	q := quietRoots{sdktrace.AlwaysSample()}
	parent := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled,
	}))
	for _, tc := range []struct {
		ctx  context.Context
		name string
		want sdktrace.SamplingDecision
	}{
		{context.Background(), "tracker.v1.TrackerService/Heartbeat", sdktrace.Drop},
		{context.Background(), "tracker.v1.TrackerService/Announce", sdktrace.Drop},
		{parent, "tracker.v1.TrackerService/Announce", sdktrace.RecordAndSample},
		{context.Background(), "tracker.v1.TrackerService/Locate", sdktrace.RecordAndSample},
		{context.Background(), "GET", sdktrace.RecordAndSample},
	} {
		got := q.ShouldSample(sdktrace.SamplingParameters{ParentContext: tc.ctx, Name: tc.name, TraceID: trace.TraceID{1}})
		if got.Decision != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got.Decision, tc.want)
		}
	}
}

// TestTraceIDWithoutExporter: with nothing configured every request still
// gets a trace id, the caller's when it sent one, and nothing is recorded
// unless the caller sampled.
func TestTraceIDWithoutExporter(t *testing.T) {
	for _, k := range []string{"OTEL_TRACES_EXPORTER", "OTEL_TRACES_SAMPLER", "OTEL_SDK_DISABLED"} {
		t.Setenv(k, "")
	}
	p, err := Setup(context.Background(), "test", "node-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Exporting() {
		t.Fatal("exporting with OTEL_TRACES_EXPORTER unset")
	}
	var id string
	var recording bool
	h := HTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id = TraceID(r)
		recording = trace.SpanFromContext(r.Context()).IsRecording()
	}), "test")

	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil))
	if len(id) != 32 || strings.Trim(id, "0") == "" || recording {
		t.Errorf("no traceparent: trace id %q, recording %v", id, recording)
	}

	const caller = "4bf92f3577b34da6a3ce929d0e0e4736"
	for _, flags := range []string{"00", "01"} {
		r := httptest.NewRequest("GET", "/x", nil)
		r.Header.Set("traceparent", "00-"+caller+"-00f067aa0ba902b7-"+flags)
		h.ServeHTTP(httptest.NewRecorder(), r)
		if id != caller || recording != (flags == "01") {
			t.Errorf("traceparent flags %s: trace id %q, recording %v", flags, id, recording)
		}
	}
}

func TestFetchSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	defer tp.Shutdown(context.Background())

	ctx, f := StartFetch(context.Background(), "origin@a", "origin", 4, 3)
	DigestFailure(ctx, "abcd", 5)
	f.End(1, 1<<20, errors.New("chunk 5: digest mismatch"))
	Fetch{}.End(0, 0, nil) // a zero Fetch is a no-op

	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans", len(spans))
	}
	s := spans[0]
	attrs := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		attrs[kv.Key] = kv.Value
	}
	if s.Name() != "spp.fetch" || attrs[KeyNode].AsString() != "origin@a" || attrs[KeySource].AsString() != "origin" ||
		attrs[KeyFirstChunk].AsInt64() != 4 || attrs[KeyChunks].AsInt64() != 3 || attrs[KeyDelivered].AsInt64() != 1 ||
		attrs[KeyBytes].AsInt64() != 1<<20 || attrs[KeyRate].AsInt64() <= 0 {
		t.Errorf("attributes %v", s.Attributes())
	}
	if s.Status().Description == "" {
		t.Errorf("status %v: want the error", s.Status())
	}
	var digest bool
	for _, e := range s.Events() {
		digest = digest || e.Name == "digest mismatch"
	}
	if !digest {
		t.Errorf("events %v: no digest mismatch", s.Events())
	}
}
