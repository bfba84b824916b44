// Package telemetry is p2pd's OpenTelemetry tracing: the process's tracer
// provider configured from the standard OTEL_* environment variables, the
// W3C trace context propagator, the gRPC and HTTP instrumentation every
// service shares, and the few span helpers the fetch path uses.
//
// Configuration (all optional; nothing set means no export at all):
//
//	OTEL_TRACES_EXPORTER                 otlp, console or none (default), comma-separated
//	OTEL_EXPORTER_OTLP_PROTOCOL          grpc or http/protobuf (default http/protobuf)
//	OTEL_EXPORTER_OTLP_TRACES_PROTOCOL   overrides the above for traces
//	OTEL_EXPORTER_OTLP_ENDPOINT          collector base URL, e.g. http://jaeger:4317
//	OTEL_EXPORTER_OTLP_TRACES_ENDPOINT   full traces URL, overrides the above
//	OTEL_TRACES_SAMPLER, _SAMPLER_ARG    default parentbased_traceidratio, ratio 1
//	OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_BSP_*, OTEL_SDK_DISABLED
//
// The remaining OTEL_EXPORTER_OTLP_* variables (headers, timeout,
// certificates, compression) are read by the exporters themselves.
package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of p2pd's own spans.
const ScopeName = "github.com/p2pd/p2pd"

// shutdownTimeout bounds the final flush: a process being stopped must not
// hang on a collector that is gone.
const shutdownTimeout = 5 * time.Second

// Provider is the process's tracing, installed as the OpenTelemetry
// globals by Setup.
type Provider struct {
	tp        *sdktrace.TracerProvider
	exporters []string
}

// Setup installs the tracer provider and the W3C trace context propagator
// as the process's globals, configured from the environment. service is
// the default service.name; nodeID, when not empty, becomes
// service.instance.id. Export errors are logged to log.
//
// With no exporter the provider still gives every request a trace id
// (the edge's X-Trace-Id and log lines carry it) but records nothing of
// its own accord: root spans are not sampled, and a caller's sampled
// trace context is honoured and passed on.
func Setup(ctx context.Context, service, nodeID string, log *slog.Logger) (*Provider, error) {
	names, err := exporterNames()
	if err != nil {
		return nil, err
	}
	sampler, err := samplerFromEnv(len(names) > 0)
	if err != nil {
		return nil, err
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", service)}
	if nodeID != "" {
		attrs = append(attrs, attribute.String("service.instance.id", nodeID))
	}
	// Later options win: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
	// override the defaults given here.
	res, err := resource.New(ctx,
		resource.WithAttributes(attrs...),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithFromEnv(),
	)
	if err != nil && res == nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(quietRoots{sampler}),
	}
	p := &Provider{exporters: names}
	for _, name := range names {
		exp, err := newExporter(ctx, name)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	p.tp = sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(p.tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	if log != nil {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			log.Warn("opentelemetry", "err", err)
		}))
		if len(names) > 0 {
			log.Info("tracing", "exporters", strings.Join(names, ","), "sampler", sampler.Description())
		}
	}
	return p, nil
}

// Exporting reports whether spans leave the process.
func (p *Provider) Exporting() bool { return len(p.exporters) > 0 }

// Close flushes the spans not yet exported and stops the exporters,
// waiting at most a few seconds.
func (p *Provider) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	return p.tp.Shutdown(ctx)
}

// exporterNames parses OTEL_TRACES_EXPORTER, dropping "none".
func exporterNames() ([]string, error) {
	if v, _ := strconv.ParseBool(os.Getenv("OTEL_SDK_DISABLED")); v {
		return nil, nil
	}
	var names []string
	for _, n := range strings.Split(os.Getenv("OTEL_TRACES_EXPORTER"), ",") {
		switch n = strings.ToLower(strings.TrimSpace(n)); n {
		case "", "none":
		case "otlp", "console":
			names = append(names, n)
		default:
			return nil, fmt.Errorf("telemetry: OTEL_TRACES_EXPORTER: unknown exporter %q (otlp, console or none)", n)
		}
	}
	return names, nil
}

func newExporter(ctx context.Context, name string) (sdktrace.SpanExporter, error) {
	if name == "console" {
		return stdouttrace.New()
	}
	proto := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch strings.TrimSpace(proto) {
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	case "", "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	default:
		return nil, fmt.Errorf("telemetry: OTLP protocol %q: use grpc or http/protobuf", proto)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP %s exporter: %w", proto, err)
	}
	return exp, nil
}

// samplerFromEnv reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG.
// Unset, it is parentbased_traceidratio (ratio from the argument, 1 by
// default) when spans are exported, and parent-based never-sample when
// they are not: a process without exporter records only what a caller's
// sampled trace context asks for.
func samplerFromEnv(exporting bool) (sdktrace.Sampler, error) {
	name := strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER")))
	arg := strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER_ARG"))
	ratio := func() (float64, error) {
		if arg == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return 0, fmt.Errorf("telemetry: OTEL_TRACES_SAMPLER_ARG %q: want a ratio in [0, 1]", arg)
		}
		return r, nil
	}
	switch name {
	case "":
		if !exporting {
			return sdktrace.ParentBased(sdktrace.NeverSample()), nil
		}
		r, err := ratio()
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), err
	case "parentbased_traceidratio":
		r, err := ratio()
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), err
	case "traceidratio":
		r, err := ratio()
		return sdktrace.TraceIDRatioBased(r), err
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	}
	return nil, fmt.Errorf("telemetry: OTEL_TRACES_SAMPLER %q: unknown sampler", name)
}

// background reports the RPCs a node makes on its own schedule
// (membership, rate reports): they never start a trace, or a trace viewer
// would show little else. Inside a trace they are traced as usual. Health
// checks are not traced at all (see traced).
func background(span string) bool {
	switch span {
	case "tracker.v1.TrackerService/Register",
		"tracker.v1.TrackerService/Heartbeat",
		"tracker.v1.TrackerService/Announce",
		"tracker.v1.TrackerService/ReportRate",
		"tracker.v1.TrackerService/Unregister":
		return true
	}
	return false
}

// quietRoots drops root spans of background RPCs and defers every other
// decision to its sampler.
type quietRoots struct{ sdktrace.Sampler }

func (q quietRoots) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	if background(p.Name) && !trace.SpanContextFromContext(p.ParentContext).IsValid() {
		return sdktrace.SamplingResult{Decision: sdktrace.Drop}
	}
	return q.Sampler.ShouldSample(p)
}

func (q quietRoots) Description() string {
	return "QuietRoots{" + q.Sampler.Description() + "}"
}
