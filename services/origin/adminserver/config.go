package adminserver

import (
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures the admin API. MediaDir is required; every other
// field has a default (see applyDefaults).
type Config struct {
	// Token is the bearer token every /v1/ call must carry. Empty disables
	// the API: every call is refused with code "admin_disabled".
	Token string
	// MediaDir is the origin's media directory: where uploads are stored
	// and publish paths are resolved. It must be the origin's.
	MediaDir string
	// ChunkSize is the origin's chunk size. Uploads are cut and hashed
	// with it while they arrive, and the origin's manifest must then have
	// the same root.
	ChunkSize int
	// MaxUploadBytes refuses larger uploads (0: no limit but the disk).
	MaxUploadBytes int64
	// ReserveBytes is the free space an upload must leave on the media
	// directory's file system, so the origin's disk never fills up.
	ReserveBytes int64
	// Metrics is this process's registry, holding the origin's counters
	// (and, in a single p2pd process, the cachenode's and the edge's).
	// GetStats adds every other node's, read from its ops listener.
	Metrics prometheus.Gatherer
	// OpsAddr is this process's own ops address as registered with the
	// tracker: nodes registered with it are counted through Metrics, not
	// scraped over HTTP.
	OpsAddr string
	// ScrapeTimeout bounds reading one node's /metrics for GetStats.
	ScrapeTimeout time.Duration
	// TraceQueryURL is the base URL of the trace store's query API
	// (Jaeger's, e.g. http://jaeger:16686) GetTrace reads from. Empty:
	// GetTrace answers unavailable.
	TraceQueryURL string
	// HTTPClient reads nodes' metrics and the trace store
	// (http.DefaultClient when nil; each call has its own deadline).
	HTTPClient *http.Client
	// TrackerTimeout bounds each call to the tracker.
	TrackerTimeout time.Duration
	// PublishWait bounds how long a publish or upload waits for the
	// tracker to list the origin as holding the file, so that edges serve
	// it as soon as the call returns. Past it the call succeeds anyway.
	PublishWait time.Duration
	// Logger receives the API's logs.
	Logger *slog.Logger
}

// applyDefaults fills unset fields:
//   - ChunkSize manifest.DefaultChunkSize, the origin's default;
//   - ReserveBytes 64 MiB: room for manifests, logs and a margin for the
//     file system's own overhead;
//   - TrackerTimeout 10s: ListNodes of a large CDN is a big answer;
//   - PublishWait 5s: holdings are announced in batches every 250 ms;
//   - ScrapeTimeout 3s: a node slower than that is reported missing
//     rather than holding the dashboard up;
//   - HTTPClient http.DefaultClient;
//   - Logger slog.Default().
func (c *Config) applyDefaults() {
	if c.ChunkSize == 0 {
		c.ChunkSize = manifest.DefaultChunkSize
	}
	if c.ReserveBytes == 0 {
		c.ReserveBytes = 64 << 20
	}
	if c.TrackerTimeout <= 0 {
		c.TrackerTimeout = 10 * time.Second
	}
	if c.PublishWait <= 0 {
		c.PublishWait = 5 * time.Second
	}
	if c.ScrapeTimeout <= 0 {
		c.ScrapeTimeout = 3 * time.Second
	}
	if c.HTTPClient == nil {
		c.HTTPClient = http.DefaultClient
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// TokenEnv is the environment variable holding the admin token when no
// token file is given.
const TokenEnv = "P2PD_ADMIN_TOKEN"

// LoadToken returns the admin token: the first line of file when file is
// set (so it need not appear in the process list or the environment),
// else $P2PD_ADMIN_TOKEN. An empty result means the admin API is disabled.
func LoadToken(file string) (string, error) {
	if file == "" {
		return strings.TrimSpace(os.Getenv(TokenEnv)), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("admin token file: %w", err)
	}
	tok, _, _ := strings.Cut(string(b), "\n")
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", fmt.Errorf("admin token file %s is empty", file)
	}
	return tok, nil
}
