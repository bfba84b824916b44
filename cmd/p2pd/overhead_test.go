package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/chunkstore"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/service"
	"github.com/p2pd/p2pd/internal/spp"
	"github.com/p2pd/p2pd/internal/telemetry"
	"github.com/p2pd/p2pd/services/cachenode/cacheserver"
	"github.com/p2pd/p2pd/services/edge/edgeserver"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// BenchmarkHotPath measures what tracing costs the hot path: aligned
// 1 MiB Range requests answered by an edge from a cachenode's store, over
// real HTTP and gRPC on loopback, in one process:
//
//	bare      no instrumentation at all (the code before tracing)
//	none      the default: instrumented, no exporter, nothing recorded
//	otlp      every request sampled and exported over OTLP/gRPC to a
//	          collector in the process that discards what it receives
//
// Compare with benchstat:
//
//	go test -run '^$' -bench HotPath -count 10 ./internal/telemetry | tee bench.txt
//	go run golang.org/x/perf/cmd/benchstat@latest -col /tracing bench.txt
//
// Besides ns/op it reports cpu-ns/op, the process's CPU time per request,
// which moves far less than wall time on a machine doing other work.
func BenchmarkHotPath(b *testing.B) {
	for _, mode := range []string{"bare", "none", "otlp"} {
		b.Run("tracing="+mode, func(b *testing.B) { benchHotPath(b, mode) })
	}
}

const benchChunks = 16

func benchHotPath(b *testing.B, mode string) {
	b.Setenv("OTEL_TRACES_SAMPLER", "")
	b.Setenv("OTEL_SDK_DISABLED", "")
	switch mode {
	case "none":
		b.Setenv("OTEL_TRACES_EXPORTER", "none")
	case "otlp":
		b.Setenv("OTEL_TRACES_EXPORTER", "otlp")
		b.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
		b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+discardCollector(b))
	}
	// The handlers take the provider when they are made: set it up first.
	if mode != "bare" {
		p, err := telemetry.Setup(context.Background(), "bench", "bench-1", nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { p.Close() })
	}
	serverOpts := service.GRPCServerOptions()
	dialOpts := service.GRPCDialOptions()
	wrap := func(h http.Handler) http.Handler { return telemetry.HTTPHandler(h, "edge") }
	if mode == "bare" {
		// Without the stats handlers, which service puts first.
		serverOpts, dialOpts = serverOpts[1:], dialOpts[1:]
		wrap = func(h http.Handler) http.Handler { return h }
	}

	// A cachenode holding a file of benchChunks chunks.
	data := make([]byte, benchChunks*manifest.DefaultChunkSize)
	rand.Read(data)
	m, err := manifest.Build(context.Background(), bytes.NewReader(data), int64(len(data)), manifest.DefaultChunkSize, 4)
	if err != nil {
		b.Fatal(err)
	}
	m.Name = "bench.mp4"
	store, err := chunkstore.Open(b.TempDir(), 1<<30)
	if err != nil {
		b.Fatal(err)
	}
	if err := store.PutManifest(m); err != nil {
		b.Fatal(err)
	}
	for i := range m.ChunkCount() {
		if err := store.Put(m.Root, i, data[m.ChunkOffset(i):][:m.ChunkLen(i)], m.Digests[i]); err != nil {
			b.Fatal(err)
		}
	}
	quiet := slog.New(slog.DiscardHandler)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	cache, err := cacheserver.New(cacheserver.Config{NodeID: "cache-1", Advertise: l.Addr().String(), Logger: quiet}, store, nil, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer(serverOpts...)
	sppv1.RegisterChunkServiceServer(srv, cache)
	go srv.Serve(l)
	b.Cleanup(srv.Stop)

	// An edge pinned to it.
	pool := spp.NewPool(append(dialOpts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	b.Cleanup(func() { pool.Close() })
	edge, err := edgeserver.New(edgeserver.Config{
		Tracker:        staticTracker{m: m},
		Nodes:          pool,
		Upstream:       l.Addr().String(),
		Logger:         quiet,
		ReportInterval: -1,
		TraceID:        telemetry.TraceID,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { edge.Close() })
	hs := httptest.NewServer(wrap(edge))
	b.Cleanup(hs.Close)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

	var next atomic.Int64
	b.SetBytes(manifest.DefaultChunkSize)
	b.ResetTimer()
	cpu0 := cpuTime(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) % benchChunks
			req, _ := http.NewRequest("GET", hs.URL+"/bench.mp4", nil)
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", i*manifest.DefaultChunkSize, (i+1)*manifest.DefaultChunkSize-1))
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 206 || n != manifest.DefaultChunkSize {
				b.Errorf("status %d, %d bytes", resp.StatusCode, n)
				return
			}
		}
	})
	// CPU time is the figure to compare: on a shared machine wall time
	// swings with whatever else runs, CPU per request much less.
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// cpuTime returns the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// discardCollector is an OTLP/gRPC trace receiver that drops everything.
func discardCollector(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, discard{})
	go srv.Serve(l)
	b.Cleanup(srv.Stop)
	return l.Addr().String()
}

type discard struct {
	collectortrace.UnimplementedTraceServiceServer
}

func (discard) Export(context.Context, *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// staticTracker publishes one file and knows nothing else; the edge is
// pinned to its node, so Locate is never asked.
type staticTracker struct{ m *manifest.Manifest }

func (t staticTracker) GetFile(context.Context, *trackerv1.GetFileRequest, ...grpc.CallOption) (*trackerv1.GetFileResponse, error) {
	return &trackerv1.GetFileResponse{File: &trackerv1.File{
		Name: t.m.Name, Size: uint64(t.m.Size), ChunkSize: uint32(t.m.ChunkSize),
		ChunkCount: uint32(t.m.ChunkCount()), Root: t.m.Root[:],
	}}, nil
}

func (staticTracker) ListFiles(context.Context, *trackerv1.ListFilesRequest, ...grpc.CallOption) (*trackerv1.ListFilesResponse, error) {
	return &trackerv1.ListFilesResponse{}, nil
}

func (staticTracker) Locate(context.Context, *trackerv1.LocateRequest, ...grpc.CallOption) (*trackerv1.LocateResponse, error) {
	return &trackerv1.LocateResponse{}, nil
}

func (staticTracker) ReportRate(context.Context, *trackerv1.ReportRateRequest, ...grpc.CallOption) (*trackerv1.ReportRateResponse, error) {
	return &trackerv1.ReportRateResponse{}, nil
}
