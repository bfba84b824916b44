package adminserver

import (
	"context"
	"net"
	"testing"

	adminv1 "github.com/p2pd/p2pd/gen/admin/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TestGRPC serves AdminService over gRPC with UnaryAuth: the token is
// required, and errors carry the stable code as ErrorInfo.
func TestGRPC(t *testing.T) {
	e := newEnv(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.UnaryInterceptor(e.admin.UnaryAuth()))
	adminv1.RegisterAdminServiceServer(gs, e.admin)
	go gs.Serve(l)
	defer gs.Stop()
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := adminv1.NewAdminServiceClient(conn)
	authed := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+testToken)

	for _, tc := range []struct {
		name   string
		ctx    context.Context
		call   func(context.Context) error
		code   codes.Code
		reason string
	}{
		{"no token", context.Background(), func(ctx context.Context) error { _, err := c.ListFiles(ctx, &adminv1.ListFilesRequest{}); return err }, codes.Unauthenticated, CodeUnauthenticated},
		{"token", authed, func(ctx context.Context) error { _, err := c.ListFiles(ctx, &adminv1.ListFilesRequest{}); return err }, codes.OK, ""},
		{"upload", authed, func(ctx context.Context) error {
			_, err := c.UploadFile(ctx, &adminv1.UploadFileRequest{Name: "g.mp4", Data: []byte("over gRPC")})
			return err
		}, codes.OK, ""},
		{"upload again", authed, func(ctx context.Context) error {
			_, err := c.UploadFile(ctx, &adminv1.UploadFileRequest{Name: "g.mp4", Data: []byte("over gRPC")})
			return err
		}, codes.AlreadyExists, CodeAlreadyExists},
		{"not published", authed, func(ctx context.Context) error {
			_, err := c.GetFile(ctx, &adminv1.GetFileRequest{Name: "nope"})
			return err
		}, codes.NotFound, CodeNotPublished},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(tc.ctx)
			st := status.Convert(err)
			if st.Code() != tc.code {
				t.Fatalf("code %v (%v), want %v", st.Code(), err, tc.code)
			}
			if tc.reason == "" {
				return
			}
			var reason string
			for _, d := range st.Details() {
				if ei, ok := d.(*errdetails.ErrorInfo); ok {
					reason = ei.Reason
				}
			}
			if reason != tc.reason {
				t.Fatalf("reason %q, want %q", reason, tc.reason)
			}
		})
	}
}
