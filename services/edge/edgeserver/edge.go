// Package edgeserver is the edge: the stateless HTTP front viewers talk
// to. It maps a URL path to a published file (tracker GetFile), fetches the
// file's manifest by root from a cachenode, and answers GET and HEAD with
// net/http.ServeContent over a rangeio.Reader whose chunks stream from the
// cachenodes the tracker ranks best, failing over mid-stream. Range,
// multipart ranges, If-Range, ETag and Last-Modified semantics are
// ServeContent's; a viewer never receives a byte that did not verify.
//
// The Server is a plain http.Handler meant to be the server's root
// handler: it does its own path checks, and a ServeMux in front would clean
// and redirect paths before they are checked. Wrappers (host restriction,
// loopback-only, tracing) compose around it.
package edgeserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/bufpool"
	"github.com/p2pd/p2pd/internal/chunkcache"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/rangeio"
	"github.com/p2pd/p2pd/internal/rank"
	"github.com/p2pd/p2pd/internal/service"
	"github.com/p2pd/p2pd/internal/spp"
	"github.com/p2pd/p2pd/services/tracker/trackerclient"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Server answers viewers' HTTP requests for published files.
type Server struct {
	cfg       Config
	nodes     Nodes
	pool      *spp.Pool // owned when Config.Nodes was nil
	metrics   *metrics
	bufs      *bufpool.Pool     // chunks on their way to viewers
	hot       *chunkcache.Cache // verified chunks in memory, nil when off
	files     *cache[string, *trackerv1.File]
	manifests *cache[manifest.Digest, *manifest.Manifest]
	locates   *cache[locateKey, *located]
	health    *rank.Healths // the sources that failed lately
	reporter  *trackerclient.Reporter
	// via, once set, carries the rate reports: a registered edge's
	// membership, which proves who reports (ReportThrough).
	via atomic.Pointer[trackerclient.RateReporter]
	// peers is each chunk source's progress over all its streams: a busy
	// node is told from a stalled one (spp.Stall).
	peers spp.Peers
	// runs are the chunk fetches in flight, shared by the viewers that
	// miss the same chunks (share.go).
	runsMu sync.Mutex
	runs   map[runKey]*sharedRun
	bg     sync.WaitGroup // shared fetches
	life   context.Context
	stop   context.CancelFunc
	done   chan struct{}
}

// New returns an edge. Close releases what it started.
func New(cfg Config) (*Server, error) {
	if cfg.Tracker == nil {
		return nil, errors.New("edgeserver: Config.Tracker is required")
	}
	cfg.applyDefaults()
	s := &Server{
		cfg:   cfg,
		nodes: cfg.Nodes,
		bufs:  &bufpool.Pool{},
		hot:   chunkcache.New(cfg.MemoryCacheBytes),
		// Flat (Base = Max): an edge's streams are short, and a node that
		// fails again is back on probation at once anyway.
		health:   rank.NewHealths(rank.HealthConfig{Base: cfg.Probation, Max: cfg.Probation}, cfg.Now),
		reporter: trackerclient.NewReporter(),
		runs:     map[runKey]*sharedRun{},
		done:     make(chan struct{}),
	}
	if s.nodes == nil {
		s.pool = spp.NewPool(append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, service.GRPCDialOptions()...)...)
		s.nodes = s.pool
	}
	s.metrics = newMetrics(cfg.Registry, s.bufs, s.hot)
	s.files = newCache[string, *trackerv1.File](cfg.FileCacheEntries, 0, nil, cfg.FileTTL, cfg.RPCTimeout, cfg.Now)
	s.manifests = newCache[manifest.Digest](1<<20, cfg.ManifestCacheBytes, func(m *manifest.Manifest) int64 {
		return int64(len(m.Digests))*manifest.DigestSize + 512
	}, 0, cfg.RPCTimeout, cfg.Now)
	s.locates = newCache[locateKey, *located](cfg.LocateCacheEntries, 0, nil, cfg.LocateTTL, cfg.RPCTimeout, cfg.Now)
	s.files.staleIfError, s.locates.staleIfError = cfg.StaleIfError, cfg.StaleIfError

	ctx, stop := context.WithCancel(context.Background())
	s.life, s.stop = ctx, stop
	var wg sync.WaitGroup
	if cfg.ReportInterval > 0 {
		wg.Go(func() { s.reporter.Run(ctx, reportVia{s}, cfg.NodeID, cfg.ReportInterval, cfg.RPCTimeout, cfg.Logger) })
	}
	if cfg.Commands != nil {
		wg.Go(func() { cfg.Commands.FollowCommands(ctx, cfg.NodeID, cfg.Logger, s.apply) })
	}
	go func() {
		defer close(s.done)
		wg.Wait()
	}()
	return s, nil
}

// Close stops rate reporting and closes the connections the edge dialed.
// Requests in flight should be drained first (http.Server.Shutdown).
func (s *Server) Close() error {
	s.stop()
	<-s.done
	s.bg.Wait()
	if s.pool != nil {
		s.pool.Close()
	}
	return nil
}

// apply carries out an operator's command: an edge has only purges to
// do (prewarm fills cachenodes).
func (s *Server) apply(c *trackerv1.Command) {
	if c.Action != trackerv1.CommandAction_COMMAND_ACTION_PURGE || !trackerclient.Chosen(c.Nodes, s.cfg.NodeID, s.cfg.Region) {
		return
	}
	root, err := manifest.DigestFromBytes(c.Root)
	if err != nil {
		s.cfg.Logger.Warn("ignoring purge with a bad root", "id", c.Id, "err", err)
		return
	}
	n := s.Purge(root)
	s.cfg.Logger.Info("purged file", "root", root.String(), "name", c.Name, "chunks_in_memory", n)
}

// Purge drops every chunk of root from the edge's memory cache and
// returns how many there were: the next request for the file fetches it
// anew from a cachenode.
func (s *Server) Purge(root manifest.Digest) int { return s.hot.RemoveRoot(root) }

// NodeID is the id the edge names itself with in SPP requests and rate
// reports.
func (s *Server) NodeID() string { return s.cfg.NodeID }

// outcome is how a request ended, for the log line and the abort.
type outcome struct {
	err   error
	abort bool // the connection must be cut: headers are out, content is not
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	s.metrics.active.Inc()
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	var traceID string
	if s.cfg.TraceID != nil {
		if traceID = s.cfg.TraceID(r); traceID != "" {
			h.Set("X-Trace-Id", traceID)
		}
	}
	rw := newResponseWriter(w)
	out := s.serve(rw, r)
	if !out.abort {
		rw.finish()
	}
	code := rw.status
	switch {
	case r.Context().Err() != nil && (out.abort || rw.err != nil):
		code = 499 // the viewer left: whatever we meant to send, it got nothing more
	case out.abort && code == 0:
		code = http.StatusBadGateway
	}
	elapsed := time.Since(start)
	s.metrics.active.Dec()
	s.metrics.requests.WithLabelValues(fmt.Sprint(code)).Inc()
	s.metrics.bytes.Add(float64(rw.written))
	s.metrics.duration.Observe(elapsed.Seconds())
	annotate(r, code, rw.written, out)
	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", code),
		slog.Int64("bytes", rw.written),
		slog.Duration("duration", elapsed),
	}
	if rg := r.Header.Get("Range"); rg != "" {
		attrs = append(attrs, slog.String("range", rg))
	}
	if out.err != nil {
		attrs = append(attrs, slog.String("err", out.err.Error()))
	}
	if out.abort {
		attrs = append(attrs, slog.Bool("aborted", true))
	}
	if traceID != "" {
		attrs = append(attrs, slog.String("trace_id", traceID))
	}
	level := slog.LevelInfo
	if out.abort && code != 499 || code >= 500 && code != http.StatusServiceUnavailable {
		// A response cut short or a 502 is a failure an operator should
		// see at the default --log-level warn, with its cause.
		level = slog.LevelWarn
	}
	s.cfg.Logger.LogAttrs(r.Context(), level, "request", attrs...)
	if out.abort {
		// Headers promised content we cannot deliver: cutting the
		// connection is the only way to tell the viewer the body is short.
		panic(http.ErrAbortHandler)
	}
}

func (s *Server) serve(rw *responseWriter, r *http.Request) outcome {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		rw.Header().Set("Allow", "GET, HEAD")
		http.Error(rw, "405 method not allowed", http.StatusMethodNotAllowed)
		return outcome{}
	}
	if r.URL.Path == "/" {
		// No file has an empty name. Viewers' "/" is the player page,
		// which webui.Player answers before requests reach the edge.
		http.Error(rw, "404 file not found", http.StatusNotFound)
		return outcome{}
	}
	name, err := nameOf(r.URL.Path)
	if err != nil {
		http.Error(rw, "400 bad request: invalid file name", http.StatusBadRequest)
		return outcome{err: err}
	}
	ctx := r.Context()
	f, err := s.file(ctx, name)
	if err != nil {
		return s.fail(rw, r, err)
	}
	if f == nil {
		http.Error(rw, "404 file not found", http.StatusNotFound)
		return outcome{}
	}
	m, err := s.manifestOf(ctx, f)
	if err != nil {
		return s.fail(rw, r, err)
	}
	r = s.rangeRequest(r)
	opts := rangeio.Options{
		MaxWindow: s.cfg.MaxWindow,
		Ahead:     s.cfg.ReadAhead,
		Buffers:   s.bufs,
	}
	if openEnded(r.Header.Get("Range")) {
		// The first byte waits for one chunk alone, not for the one
		// after it fetched and verified beside it on the same CPUs; the
		// next window (two chunks) is asked for as soon as it is taken.
		opts.MinWindow = 1
	}
	rd := rangeio.NewReader(ctx, fileSource{s: s, m: m}, m.Size, m.ChunkSize, opts)
	defer rd.Close()
	h := rw.Header()
	h.Set("Content-Type", contentType(f, m))
	h.Set("Etag", m.ETag())
	h.Set("Cache-Control", s.cfg.CacheControl)
	h.Set("Accept-Ranges", "bytes")
	rw.started = func() bool { return rd.Delivered() > 0 }
	rw.size = m.Size
	if end, ok := rangeEnd(r.Header.Get("Range")); ok {
		rd.HintEnd(end)
	}
	http.ServeContent(rw, r, name, m.ModTime, rd)
	if err := rd.Err(); err != nil {
		if rw.reset() {
			return s.fail(rw, r, err)
		}
		return outcome{err: err, abort: true}
	}
	return outcome{}
}

// fail answers an error that happened before any content was sent.
func (s *Server) fail(rw *responseWriter, r *http.Request, err error) outcome {
	if r.Context().Err() != nil {
		return outcome{err: err, abort: true} // nobody left to answer
	}
	code, msg := http.StatusBadGateway, "502 bad gateway: the file's data could not be fetched from any cache node"
	switch {
	case errors.Is(err, errTracker):
		code, msg = http.StatusServiceUnavailable, "503 service unavailable: the tracker cannot be reached, retry shortly"
	case errors.Is(err, errNotHeld):
		code, msg = http.StatusNotFound, "404 not found: no node holds this part of the file and none may fetch it"
	case errors.Is(err, errNoSource):
		code, msg = http.StatusServiceUnavailable, "503 service unavailable: no cache node is available, retry shortly"
	}
	if code == http.StatusServiceUnavailable {
		rw.Header().Set("Retry-After", "1")
	}
	http.Error(rw, msg, code)
	return outcome{err: err}
}

// rangeRequest returns r with a Range header ServeContent should see.
// ServeContent answers 416 to any Range it cannot parse; RFC 9110 §14.2
// wants a range unit the server does not know ignored, and the unit is
// case-insensitive. Too many ranges are ignored as well. A suffix range
// of length zero ("-0") is unsatisfiable (RFC 9110 §14.1.1), but
// ServeContent answers it with an empty part whose Content-Range is
// "bytes SIZE-(SIZE-1)/SIZE" (found by FuzzServeRange): such ranges are
// dropped, and a set of nothing else becomes a range that starts past any
// end, which ServeContent answers 416.
func (s *Server) rangeRequest(r *http.Request) *http.Request {
	v := r.Header.Get("Range")
	if v == "" {
		return r
	}
	unit, spec, ok := strings.Cut(v, "=")
	var keep string
	switch {
	case !ok || !strings.EqualFold(strings.TrimSpace(unit), "bytes"):
	case strings.Count(spec, ",") >= s.cfg.MaxRanges:
	default:
		keep = "bytes=" + dropEmptySuffixes(spec)
		if keep == v {
			return r
		}
	}
	r = r.Clone(r.Context()) // a handler must not modify the request it was given
	if keep == "" {
		r.Header.Del("Range")
	} else {
		r.Header.Set("Range", keep)
	}
	return r
}

// dropEmptySuffixes removes the "-0" ranges of a range set; a set of
// nothing else becomes one unsatisfiable range.
func dropEmptySuffixes(spec string) string {
	parts := strings.Split(spec, ",")
	kept := parts[:0]
	for _, p := range parts {
		if n, ok := strings.CutPrefix(strings.TrimSpace(p), "-"); ok && n != "" && strings.Trim(n, "0") == "" {
			continue
		}
		kept = append(kept, p)
	}
	if len(kept) == len(parts) {
		return spec
	}
	if len(kept) == 0 {
		return strconv.FormatInt(math.MaxInt64, 10) + "-"
	}
	return strings.Join(kept, ",")
}

// rangeEnd returns the end (exclusive) of a single "bytes=a-b" range. It
// is a read-ahead hint only, so a player's aligned one-chunk request costs
// one chunk; what is sent, and whether the range is honoured at all, is
// ServeContent's decision.
func rangeEnd(v string) (int64, bool) {
	spec, ok := strings.CutPrefix(v, "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, false
	}
	_, b, ok := strings.Cut(spec, "-")
	if !ok {
		return 0, false
	}
	last, err := strconv.ParseInt(strings.TrimSpace(b), 10, 64)
	if err != nil || last < 0 || last == math.MaxInt64 {
		return 0, false
	}
	return last + 1, true
}

// openEnded reports a request that reads on to the end of the file: no
// Range, or a single "bytes=N-".
func openEnded(v string) bool {
	if v == "" {
		return true
	}
	spec, ok := strings.CutPrefix(v, "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return false
	}
	a, b, ok := strings.Cut(spec, "-")
	return ok && strings.TrimSpace(a) != "" && strings.TrimSpace(b) == ""
}

// nameOf maps a URL path to a published name. The path is already
// percent-decoded, so "/%2e%2e%2fx" arrives as "/../x" and is refused here
// like any name that could never be published.
func nameOf(p string) (string, error) {
	name, ok := strings.CutPrefix(p, "/")
	if !ok {
		return "", fmt.Errorf("%w %q: not an absolute path", manifest.ErrBadName, p)
	}
	if err := manifest.CheckName(name); err != nil {
		return "", err
	}
	return name, nil
}

// contentType is the type recorded at publication, else the one p2pd
// registers for the name's extension (never the host's mime.types).
func contentType(f *trackerv1.File, m *manifest.Manifest) string {
	switch {
	case f.ContentType != "":
		return f.ContentType
	case m.ContentType != "":
		return m.ContentType
	}
	return manifest.ContentType(f.Name)
}

// ReportThrough sends the edge's rate reports through r from now on: a
// registered edge's trackerclient.Member, so the tracker counts them for
// everyone (an unregistered edge's reports shape only its own ranking).
func (s *Server) ReportThrough(r trackerclient.RateReporter) { s.via.Store(&r) }

// reportVia is the RateReporter the edge's reports go through.
type reportVia struct{ s *Server }

func (v reportVia) ReportRate(ctx context.Context, in *trackerv1.ReportRateRequest, opts ...grpc.CallOption) (*trackerv1.ReportRateResponse, error) {
	if r := v.s.via.Load(); r != nil {
		return (*r).ReportRate(ctx, in, opts...)
	}
	return v.s.cfg.Tracker.ReportRate(ctx, in, opts...)
}
