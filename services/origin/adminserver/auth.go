package adminserver

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	adminv1 "github.com/p2pd/p2pd/gen/admin/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
)

// tokenCheck compares presented tokens with the configured one in
// constant time. Both sides are hashed first so that neither the content
// nor the length of the token leaks through timing.
type tokenCheck struct {
	want [sha256.Size]byte
	set  bool
}

func newTokenCheck(token string) tokenCheck {
	return tokenCheck{want: sha256.Sum256([]byte(token)), set: token != ""}
}

// verify checks an Authorization header value.
func (t tokenCheck) verify(authorization string) error {
	if !t.set {
		return newError(CodeAdminDisabled, http.StatusServiceUnavailable, codes.Unavailable, nil,
			"the admin API is disabled: no admin token is configured on this server; start it with --admin-token-file FILE or %s set", TokenEnv)
	}
	scheme, tok, ok := strings.Cut(authorization, " ")
	if authorization == "" || !ok || !strings.EqualFold(scheme, "Bearer") {
		return newError(CodeUnauthenticated, http.StatusUnauthorized, codes.Unauthenticated, nil,
			`missing bearer token: send "Authorization: Bearer TOKEN" (p2pd admin --token or %s)`, TokenEnv)
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	if subtle.ConstantTimeCompare(got[:], t.want[:]) != 1 {
		return newError(CodeUnauthenticated, http.StatusUnauthorized, codes.Unauthenticated, nil,
			"wrong admin token: use the token the server was started with")
	}
	return nil
}

// wrap refuses requests without the token.
func (t tokenCheck) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := t.verify(r.Header.Get("Authorization")); err != nil {
			writeError(w, err)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// UnaryAuth returns a gRPC interceptor that demands the admin token in the
// "authorization" metadata of AdminService calls, for serving the API over
// gRPC directly. Other services' calls pass through untouched.
func (s *Server) UnaryAuth() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !strings.HasPrefix(info.FullMethod, "/"+adminv1.AdminService_ServiceDesc.ServiceName+"/") {
			return handler(ctx, req)
		}
		md, _ := metadata.FromIncomingContext(ctx)
		var auth string
		if v := md.Get("authorization"); len(v) > 0 {
			auth = v[0]
		}
		if err := s.auth.verify(auth); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}
