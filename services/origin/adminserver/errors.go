package adminserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	adminv1 "github.com/p2pd/p2pd/gen/admin/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

// Stable error codes of the admin API. Scripts match on them; the
// messages are for people and may change.
const (
	CodeUnauthenticated     = "unauthenticated"      // 401: token missing or wrong
	CodeAdminDisabled       = "admin_disabled"       // 503: no token configured on the server
	CodeInvalidArgument     = "invalid_argument"     // 400: malformed request
	CodeInvalidName         = "invalid_name"         // 400: not a publishable name
	CodeOutsideMediaDir     = "outside_media_dir"    // 400: path escapes the media directory
	CodeNotRegularFile      = "not_a_regular_file"   // 400: a directory, symlink or device
	CodePathNotFound        = "path_not_found"       // 404: nothing at that path under the media directory
	CodeNotPublished        = "not_published"        // 404: no published file of that name
	CodeAlreadyPublished    = "already_published"    // 409: publishing a name that is published
	CodeAlreadyExists       = "already_exists"       // 409: uploading over a stored file
	CodeTooLarge            = "too_large"            // 413: above the server's upload limit
	CodeInsufficientStorage = "insufficient_storage" // 507: does not fit on the media disk
	CodeUploadIncomplete    = "upload_incomplete"    // 400: the body ended early
	CodeDigestMismatch      = "digest_mismatch"      // 400: the body is not what Repr-Digest says
	CodeTrackerUnavailable  = "tracker_unavailable"  // 503: the tracker cannot be reached
	CodeUnknownNode         = "unknown_node"         // 400: a prewarm names a node that is not a live cachenode
	CodeTraceNotFound       = "trace_not_found"      // 404: the trace store has no such trace (yet)
	CodeTracesUnavailable   = "traces_unavailable"   // 503: no trace store configured, or it cannot be reached
	CodeNotFound            = "not_found"            // 404: no such route
	CodeMethodNotAllowed    = "method_not_allowed"   // 405
	CodeInternal            = "internal"             // 500
)

// apiError is an error the API reports as is: a stable code, the HTTP and
// gRPC statuses, and a message saying what to do.
type apiError struct {
	code string
	http int
	grpc codes.Code
	msg  string
	err  error // the cause, for logs and errors.Is
}

func (e *apiError) Error() string { return e.msg }
func (e *apiError) Unwrap() error { return e.err }

// GRPCStatus makes the error a gRPC status for gRPC callers, with the
// stable code as the ErrorInfo reason.
func (e *apiError) GRPCStatus() *status.Status {
	st := status.New(e.grpc, e.msg)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: e.code, Domain: "p2pd.admin"}); err == nil {
		return d
	}
	return st
}

func newError(code string, httpStatus int, grpcCode codes.Code, cause error, format string, args ...any) *apiError {
	return &apiError{code: code, http: httpStatus, grpc: grpcCode, msg: fmt.Sprintf(format, args...), err: cause}
}

func errInvalid(format string, args ...any) *apiError {
	return newError(CodeInvalidArgument, http.StatusBadRequest, codes.InvalidArgument, nil, format, args...)
}

func errTracker(err error, what string) *apiError {
	return newError(CodeTrackerUnavailable, http.StatusServiceUnavailable, codes.Unavailable, err,
		"%s: the tracker cannot be reached (%v); check that it runs and retry", what, err)
}

func errInternal(err error, what string) *apiError {
	return newError(CodeInternal, http.StatusInternalServerError, codes.Internal, err, "%s: %v", what, err)
}

// toAPIError classifies any error the API can meet: its own, or a gRPC
// status (the gateway's own parse errors among them).
func toAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	st := status.Convert(err)
	code := st.Code()
	switch code {
	case codes.NotFound:
		return newError(CodeNotFound, http.StatusNotFound, code, err, "%s; see /v1/openapi.json", st.Message())
	case codes.Unimplemented:
		return newError(CodeNotFound, http.StatusNotFound, code, err, "no such admin API route; see /v1/openapi.json")
	case codes.InvalidArgument:
		return newError(CodeInvalidArgument, http.StatusBadRequest, code, err, "invalid request: %s", st.Message())
	case codes.Canceled:
		return newError("canceled", 499, code, err, "request canceled")
	}
	return newError(strings.ToLower(code.String()), runtime.HTTPStatusFromCode(code), code, err, "%s", st.Message())
}

// writeError answers with the API's JSON error body.
func writeError(w http.ResponseWriter, err error) {
	ae := toAPIError(err)
	body, _ := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(&adminv1.Error{
		Code: ae.code, Message: ae.msg, Status: int32(ae.http),
	})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	if ae.http == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="p2pd-admin"`)
	}
	w.WriteHeader(ae.http)
	w.Write(append(body, '\n'))
}

// gatewayError is the grpc-gateway error handler: every failure, the
// gateway's own included, gets the same JSON body.
func gatewayError(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, _ *http.Request, err error) {
	writeError(w, err)
}
