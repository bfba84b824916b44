package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// jaegerEnv names a prebuilt Jaeger binary (v2, all-in-one) to use instead
// of building one from deployments/compose/tools/jaeger.
const jaegerEnv = "P2PD_E2E_JAEGER"

// jaeger is a real trace store: Jaeger v2 with in-memory storage, taking
// OTLP over gRPC and answering its query API.
type jaeger struct {
	otlp  string // host:port of the OTLP gRPC receiver
	query string // base URL of the query API
}

// startJaeger builds (once per test binary, then from Go's build cache)
// and starts the compose deployment's Jaeger on free loopback ports.
func startJaeger(t *testing.T) *jaeger {
	t.Helper()
	exe := os.Getenv(jaegerEnv)
	if exe == "" {
		exe = filepath.Join(binDir, "jaeger")
		if _, err := os.Stat(exe); err != nil {
			t.Logf("building Jaeger from deployments/compose/tools/jaeger (minutes the first time; set %s to a built binary to skip)", jaegerEnv)
			start := time.Now()
			cmd := exec.Command("go", "build", "-o", exe, "github.com/jaegertracing/jaeger/cmd/jaeger")
			cmd.Dir = filepath.Join("..", "deployments", "compose", "tools", "jaeger")
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("build Jaeger: %v\n%s", err, out)
			}
			t.Logf("Jaeger built in %v", time.Since(start).Round(time.Second))
		}
	}
	j := &jaeger{otlp: freeAddr(t, "127.0.0.7")}
	queryAddr, health := freeAddr(t, "127.0.0.7"), freeAddr(t, "127.0.0.7")
	j.query = "http://" + queryAddr
	// Only what a trace store needs: OTLP in, memory, the query API out;
	// no fixed port, so it runs beside a compose stack's Jaeger.
	config := fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: %q
  jaeger_storage:
    backends:
      memory_store:
        memory:
          max_traces: 10000
  jaeger_query:
    storage:
      traces: memory_store
    http:
      endpoint: %q
    grpc:
      endpoint: %q
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %q
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memory_store
`, health, queryAddr, freeAddr(t, "127.0.0.7"), j.otlp)
	path := filepath.Join(t.TempDir(), "jaeger.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	startExe(t, "jaeger", exe, "--config", path)
	eventually(t, 60*time.Second, "Jaeger's query API answers", func() error {
		resp, err := http.Get(j.query + "/api/services")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	return j
}

// exportSpans sends the spans of every process the test starts from now
// on to the OTLP gRPC receiver at addr.
func exportSpans(t *testing.T, addr string) {
	for k, v := range map[string]string{
		"OTEL_TRACES_EXPORTER":        "otlp",
		"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + addr,
		"OTEL_BSP_SCHEDULE_DELAY":     "100", // milliseconds: spans arrive while the test waits
		"OTEL_TRACES_SAMPLER":         "",
		"OTEL_SERVICE_NAME":           "",
		"OTEL_RESOURCE_ATTRIBUTES":    "",
	} {
		t.Setenv(k, v)
	}
}
