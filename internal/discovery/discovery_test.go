package discovery

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	discoveryv1 "github.com/p2pd/p2pd/gen/discovery/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func TestChild(t *testing.T) {
	server := Info{Trackers: []string{"10.0.0.1:8080"}, Path: []Node{{ID: "origin", Addr: "10.0.0.1:8080", Origin: true}}, Region: "eu"}
	site := Info{Trackers: []string{"srv:8080"}, Path: []Node{{ID: "site", Addr: "site:8080"}, server.Path[0]}, Region: "eu"}
	tests := []struct {
		name         string
		parent       Info
		parentAddr   string
		self         string
		region       string
		wantTrackers []string
		wantParents  []string
		wantRegion   string
		wantErr      string
	}{
		{name: "a child of the server dials the tracker where it reached the server",
			parent: server, parentAddr: "srv:8080", self: "site",
			wantTrackers: []string{"srv:8080"}, wantRegion: "eu"},
		{name: "a child of a cache uses its parent's trackers and climbs through it",
			parent: site, parentAddr: "site:8080", self: "leaf", region: "eu-west",
			wantTrackers: []string{"srv:8080"}, wantParents: []string{"site"}, wantRegion: "eu-west"},
		{name: "a loop is refused", parent: site, parentAddr: "site:8080", self: "site", wantErr: "loop"},
		{name: "no path", parent: Info{}, parentAddr: "x:1", self: "leaf", wantErr: "no path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := Child(tt.parent, tt.parentAddr, Node{ID: tt.self, Addr: tt.self + ":8080"}, tt.region)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one about %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var parents []string
			for _, p := range in.Parents() {
				parents = append(parents, p.ID)
			}
			if !slices.Equal(in.Trackers, tt.wantTrackers) || !slices.Equal(parents, tt.wantParents) || in.Region != tt.wantRegion || in.Path[0].ID != tt.self {
				t.Fatalf("got trackers %v parents %v region %q self %q; want %v %v %q %q",
					in.Trackers, parents, in.Region, in.Path[0].ID, tt.wantTrackers, tt.wantParents, tt.wantRegion, tt.self)
			}
		})
	}
}

// TestDescribe: a node's Info survives the trip over gRPC.
func TestDescribe(t *testing.T) {
	want := Info{Trackers: []string{"srv:8080"}, Path: []Node{{ID: "site", Addr: "site:8080"}, {ID: "origin", Addr: "srv:8080", Origin: true}}, Region: "eu"}
	got, err := learnFrom(t, func(srv *grpc.Server) { discoveryv1.RegisterDiscoveryServiceServer(srv, NewServer(want)) })
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Describe = %+v, want %+v", got, want)
	}
}

// TestLearnNotServed: a node without discovery (an older server) is told
// apart at once from one that is not up yet, which is waited for.
func TestLearnNotServed(t *testing.T) {
	if _, err := learnFrom(t, func(*grpc.Server) {}); !errors.Is(err, ErrNotServed) { // serves nothing
		t.Fatalf("Learn from a node without discovery: %v, want ErrNotServed", err)
	}
}

// learnFrom runs Learn against a gRPC server on loopback whose services
// register adds.
func learnFrom(t *testing.T, register func(*grpc.Server)) (Info, error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	register(srv)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return Learn(ctx, conn, l.Addr().String(), slog.New(slog.NewTextHandler(io.Discard, nil)))
}
