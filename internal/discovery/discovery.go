// Package discovery lets a node join the CDN through any other node. Every
// p2pd node answers Describe on its port with the trackers it uses and its
// ancestry (itself, its parent, ... up to the server), so a cache started
// with -S naming a cache learns everything from it, exactly as a cache
// naming a server does, and becomes its child in the tree.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	discoveryv1 "github.com/p2pd/p2pd/gen/discovery/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Node is one node on the way up the tree.
type Node struct {
	ID   string
	Addr string // where it serves gRPC
	// Origin marks the server: the top of the tree, which holds everything.
	Origin bool
}

// Info is what a node tells the nodes that join through it.
type Info struct {
	// Trackers are the host:port addresses of the trackers it uses.
	Trackers []string
	// Path is the node itself, then its parent, up to the server.
	Path []Node
	// Region is the node's region label.
	Region string
}

// Parents returns the caches above the node, nearest first: its path
// without itself and without the server at the top.
func (in Info) Parents() []Node {
	if len(in.Path) < 2 {
		return nil
	}
	return slices.DeleteFunc(slices.Clone(in.Path[1:]), func(n Node) bool { return n.Origin })
}

// Child returns the Info of self joining through the node described by
// parent, which it reached at parentAddr. A child of the server dials the
// tracker at the address it reached the server on (surely routable from
// here); deeper nodes use their parent's trackers. region, when empty, is
// inherited from the parent.
func Child(parent Info, parentAddr string, self Node, region string) (Info, error) {
	if len(parent.Path) == 0 {
		return Info{}, errors.New("the node joined describes no path to a server")
	}
	for _, n := range parent.Path {
		if n.ID == self.ID {
			return Info{}, fmt.Errorf("joining through %s would make a loop: %s is already on its path to the server", parentAddr, self.ID)
		}
	}
	trackers := parent.Trackers
	if parent.Path[0].Origin {
		trackers = []string{parentAddr}
	}
	if len(trackers) == 0 {
		return Info{}, fmt.Errorf("%s knows no tracker", parentAddr)
	}
	if region == "" {
		region = parent.Region
	}
	return Info{Trackers: slices.Clone(trackers), Path: append([]Node{self}, parent.Path...), Region: region}, nil
}

// Server answers Describe with a node's Info.
type Server struct {
	discoveryv1.UnimplementedDiscoveryServiceServer
	resp *discoveryv1.DescribeResponse
}

// NewServer returns a Server describing in.
func NewServer(in Info) *Server {
	resp := &discoveryv1.DescribeResponse{Trackers: in.Trackers, Region: in.Region}
	for _, n := range in.Path {
		resp.Path = append(resp.Path, &discoveryv1.Ancestor{Id: n.ID, GrpcAddr: n.Addr, Origin: n.Origin})
	}
	return &Server{resp: resp}
}

// Describe implements discovery.v1.
func (s *Server) Describe(context.Context, *discoveryv1.DescribeRequest) (*discoveryv1.DescribeResponse, error) {
	return s.resp, nil
}

// Describe asks the node behind conn for its Info.
func Describe(ctx context.Context, conn grpc.ClientConnInterface) (Info, error) {
	resp, err := discoveryv1.NewDiscoveryServiceClient(conn).Describe(ctx, &discoveryv1.DescribeRequest{})
	if err != nil {
		return Info{}, err
	}
	in := Info{Trackers: resp.Trackers, Region: resp.Region}
	for _, a := range resp.Path {
		if a.GetId() == "" || a.GetGrpcAddr() == "" {
			return Info{}, errors.New("describe: a node on the path has no id or address")
		}
		in.Path = append(in.Path, Node{ID: a.Id, Addr: a.GrpcAddr, Origin: a.Origin})
	}
	return in, nil
}

// ErrNotServed is returned by Learn for a node that does not serve
// discovery: a server from before it existed, which is then the parent
// and the tracker itself, as caches always took it to be.
var ErrNotServed = errors.New("the node serves no discovery")

// Learn asks the node behind conn for its Info until it answers or ctx
// ends: a parent starting at the same time as its child answers only
// once it has joined the CDN itself.
func Learn(ctx context.Context, conn grpc.ClientConnInterface, addr string, log *slog.Logger) (Info, error) {
	wait := 200 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		in, err := Describe(cctx, conn)
		cancel()
		if err == nil {
			return in, nil
		}
		if status.Code(err) == codes.Unimplemented {
			return Info{}, fmt.Errorf("%s: %w", addr, ErrNotServed)
		}
		log.Warn("cannot learn the CDN from the node joined; retrying", "node", addr, "err", err)
		select {
		case <-ctx.Done():
			return Info{}, fmt.Errorf("learn the CDN from %s: %w", addr, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}
