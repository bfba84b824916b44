// Package adminserver is the admin API of a p2pd CDN, hosted by the
// origin on its ops listener: publish a file from the media directory or
// upload one, list, describe and unpublish files, and look at the nodes
// and statistics. It is AdminService (proto/admin/v1) served as REST by an
// in-process grpc-gateway, plus a plain handler for uploads (a raw body
// streamed to disk), the OpenAPI spec and the web dashboard.
//
// Facts about the CDN come from the tracker; files come from the origin,
// which owns the published set.
package adminserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	adminv1 "github.com/p2pd/p2pd/gen/admin/v1"
	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/webui"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
)

// Origin is the part of the origin the API drives; *originserver.Server
// satisfies it.
type Origin interface {
	Publish(ctx context.Context, name string) (*manifest.Manifest, error)
	Unpublish(ctx context.Context, name string) error
	Files() []*manifest.Manifest
	Lookup(name string) (*manifest.Manifest, bool)
}

// Tracker is the part of the tracker API the admin API uses;
// trackerclient.Client and trackerv1.TrackerServiceClient satisfy it.
type Tracker interface {
	ListNodes(ctx context.Context, in *trackerv1.ListNodesRequest, opts ...grpc.CallOption) (*trackerv1.ListNodesResponse, error)
	ListFiles(ctx context.Context, in *trackerv1.ListFilesRequest, opts ...grpc.CallOption) (*trackerv1.ListFilesResponse, error)
	GetFile(ctx context.Context, in *trackerv1.GetFileRequest, opts ...grpc.CallOption) (*trackerv1.GetFileResponse, error)
	UnpublishFile(ctx context.Context, in *trackerv1.UnpublishFileRequest, opts ...grpc.CallOption) (*trackerv1.UnpublishFileResponse, error)
	Locate(ctx context.Context, in *trackerv1.LocateRequest, opts ...grpc.CallOption) (*trackerv1.LocateResponse, error)
	PostCommand(ctx context.Context, in *trackerv1.PostCommandRequest, opts ...grpc.CallOption) (*trackerv1.PostCommandResponse, error)
}

// Server implements adminv1.AdminServiceServer and serves it as REST.
type Server struct {
	adminv1.UnimplementedAdminServiceServer

	cfg     Config
	log     *slog.Logger
	origin  Origin
	tracker Tracker // nil: a lone origin, no CDN facts to report
	auth    tokenCheck
	media   *os.Root // the media directory; operations through it cannot escape it
	locks   nameLocks
	gateway *runtime.ServeMux
	openapi []byte
}

// jsonOptions are shared by the gateway and the upload handler, so every
// answer has the same shape: camelCase keys, every field present.
var jsonOptions = protojson.MarshalOptions{EmitUnpopulated: true}

// New returns the admin API for an origin. tracker may be nil when the
// origin runs without one. Close releases the media directory handle.
func New(cfg Config, origin Origin, tracker Tracker) (*Server, error) {
	cfg.applyDefaults()
	if origin == nil {
		return nil, errors.New("adminserver: origin is required")
	}
	if cfg.MediaDir == "" {
		return nil, errors.New("adminserver: media directory not set")
	}
	if cfg.ChunkSize < manifest.MinChunkSize || cfg.ChunkSize > manifest.MaxChunkSize {
		return nil, fmt.Errorf("adminserver: chunk size %d outside [%d,%d]", cfg.ChunkSize, manifest.MinChunkSize, manifest.MaxChunkSize)
	}
	dir, err := filepath.Abs(cfg.MediaDir)
	if err != nil {
		return nil, fmt.Errorf("adminserver: media directory: %w", err)
	}
	cfg.MediaDir = dir
	media, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("adminserver: media directory: %w", err)
	}
	spec, err := openAPISpec(adminv1.OpenAPI)
	if err != nil {
		media.Close()
		return nil, fmt.Errorf("adminserver: %w", err)
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "admin"),
		origin:  origin,
		tracker: tracker,
		auth:    newTokenCheck(cfg.Token),
		media:   media,
		openapi: spec,
	}
	s.removeStaleUploads()
	s.gateway = runtime.NewServeMux(
		runtime.WithErrorHandler(gatewayError),
		runtime.WithRoutingErrorHandler(routingError),
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{MarshalOptions: jsonOptions}),
	)
	if err := adminv1.RegisterAdminServiceHandlerServer(context.Background(), s.gateway, s); err != nil {
		media.Close()
		return nil, fmt.Errorf("adminserver: register gateway: %w", err)
	}
	return s, nil
}

// Close releases the media directory handle.
func (s *Server) Close() error { return s.media.Close() }

// Mount registers the API on mux (the ops listener's):
//
//	PUT  /v1/files/{name...}  upload (a raw body, streamed to disk)
//	     /v1/...              the rest of AdminService, through grpc-gateway
//	GET  /v1/openapi.json     the OpenAPI spec (no token needed)
//	GET  /ui/                 the dashboard (no token needed to load the
//	                          page; it asks for one to call the API)
func (s *Server) Mount(mux *http.ServeMux) {
	// The upload has its own handler so the body is streamed to disk; the
	// gateway would read it whole into memory first.
	mux.Handle("PUT /v1/files/{name...}", s.auth.wrap(http.HandlerFunc(s.serveUpload)))
	mux.HandleFunc("GET /v1/openapi.json", s.serveOpenAPI)
	mux.Handle("/v1/", s.auth.wrap(s.gateway))
	mux.Handle("/ui/", webui.Dashboard())
}

// Handler returns a handler serving only the admin API and the dashboard,
// for tests and for processes without an ops mux of their own.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	s.Mount(mux)
	return mux
}

// routingError answers requests no admin route matches.
func routingError(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	switch httpStatus {
	case http.StatusMethodNotAllowed:
		writeError(w, newError(CodeMethodNotAllowed, httpStatus, codes.Unimplemented, nil, "%s is not allowed on %s; see /v1/openapi.json", r.Method, r.URL.Path))
	case http.StatusBadRequest:
		writeError(w, errInvalid("malformed request for %s %s", r.Method, r.URL.Path))
	default:
		writeError(w, newError(CodeNotFound, http.StatusNotFound, codes.NotFound, nil, "no admin API route %s %s; see /v1/openapi.json", r.Method, r.URL.Path))
	}
}

// nameLocks serialises the changes to one name (publish, upload commit,
// delete) without serialising different names.
type nameLocks struct {
	mu sync.Mutex
	m  map[string]*nameLock
}

type nameLock struct {
	sync.Mutex
	refs int
}

func (l *nameLocks) lock(name string) (unlock func()) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*nameLock{}
	}
	nl := l.m[name]
	if nl == nil {
		nl = &nameLock{}
		l.m[name] = nl
	}
	nl.refs++
	l.mu.Unlock()
	nl.Lock()
	return func() {
		nl.Unlock()
		l.mu.Lock()
		if nl.refs--; nl.refs == 0 {
			delete(l.m, name)
		}
		l.mu.Unlock()
	}
}
