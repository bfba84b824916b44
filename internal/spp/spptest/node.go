package spptest

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/spp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// File is a published file: its bytes and their manifest.
type File struct {
	M    *manifest.Manifest
	Data []byte
}

// NewFile builds the manifest of data in chunks of chunkSize.
func NewFile(t testing.TB, name string, data []byte, chunkSize int) *File {
	t.Helper()
	m, err := manifest.Build(context.Background(), bytes.NewReader(data), int64(len(data)), chunkSize, 1)
	if err != nil {
		t.Fatal(err)
	}
	m.Name = name
	return &File{M: m, Data: data}
}

// Chunk returns chunk i's bytes.
func (f *File) Chunk(i int) []byte {
	off := f.M.ChunkOffset(i)
	return f.Data[off : off+int64(f.M.ChunkLen(i))]
}

// Behaviour is how a Node answers.
type Behaviour int

const (
	// Honest answers what it holds and NOT_FOUND for the rest.
	Honest Behaviour = iota
	// Silent accepts every call and never answers it, as a stopped
	// (SIGSTOP) or cut-off process looks to its clients.
	Silent
	// WrongManifest answers another root's valid manifest.
	WrongManifest
)

// Node is an SPP node on loopback.
type Node struct {
	sppv1.UnimplementedChunkServiceServer
	Addr string

	files     map[manifest.Digest]*File
	mu        sync.Mutex
	behaviour Behaviour
	manifests atomic.Int64 // GetManifest calls
	fetches   atomic.Int64 // Fetch calls
	release   chan struct{}
}

// Start serves files on a free loopback port until the test ends.
func Start(t testing.TB, b Behaviour, files ...*File) *Node {
	t.Helper()
	n := &Node{files: map[manifest.Digest]*File{}, behaviour: b, release: make(chan struct{})}
	for _, f := range files {
		n.files[f.M.Root] = f
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.Addr = l.Addr().String()
	s := grpc.NewServer()
	sppv1.RegisterChunkServiceServer(s, n)
	go s.Serve(l)
	t.Cleanup(func() {
		close(n.release) // a silent handler returns, so Stop does not wait on it
		s.Stop()
	})
	return n
}

// SetBehaviour changes how the node answers from now on.
func (n *Node) SetBehaviour(b Behaviour) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.behaviour = b
}

func (n *Node) current() Behaviour {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.behaviour
}

// ManifestCalls counts the GetManifest calls the node got.
func (n *Node) ManifestCalls() int64 { return n.manifests.Load() }

// FetchCalls counts the Fetch calls the node got.
func (n *Node) FetchCalls() int64 { return n.fetches.Load() }

// silence holds a call until its client gives up or the test ends.
func (n *Node) silence(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-n.release:
		return status.Error(codes.Unavailable, "test over")
	}
}

func (n *Node) file(root []byte) (*File, error) {
	d, err := manifest.DigestFromBytes(root)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	f := n.files[d]
	if f == nil {
		return nil, status.Error(codes.NotFound, "no such file")
	}
	return f, nil
}

// GetManifest answers the manifest of the root asked for.
func (n *Node) GetManifest(ctx context.Context, req *sppv1.GetManifestRequest) (*sppv1.GetManifestResponse, error) {
	n.manifests.Add(1)
	b := n.current()
	if b == Silent {
		return nil, n.silence(ctx)
	}
	f, err := n.file(req.GetRoot())
	if err != nil {
		return nil, err
	}
	p := f.M.ToProto()
	if b == WrongManifest {
		data := append([]byte("not "), f.Data...)
		other, err := manifest.Build(ctx, bytes.NewReader(data), int64(len(data)), f.M.ChunkSize, 1)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		p = other.ToProto()
	}
	return &sppv1.GetManifestResponse{Manifest: p}, nil
}

// Fetch sends the chunks asked for, in order.
func (n *Node) Fetch(req *sppv1.FetchRequest, stream grpc.ServerStreamingServer[sppv1.FetchResponse]) error {
	n.fetches.Add(1)
	if n.current() == Silent {
		return n.silence(stream.Context())
	}
	spp.Accepted(stream)
	f, err := n.file(req.Root)
	if err != nil {
		return err
	}
	for _, c := range req.Chunks {
		if int(c) >= f.M.ChunkCount() {
			return status.Errorf(codes.OutOfRange, "chunk %d of %d", c, f.M.ChunkCount())
		}
		if err := spp.SendChunk(stream, int(c), f.Chunk(int(c))); err != nil {
			return err
		}
	}
	return nil
}

// ReadAll fetches the chunks req asks for from c through a verifying
// reader and returns their bytes in order: what a well-behaved client
// receives.
func ReadAll(ctx context.Context, c sppv1.ChunkServiceClient, m *manifest.Manifest, req *sppv1.FetchRequest, stall time.Duration) ([]byte, error) {
	r, err := spp.Open(ctx, c, m, req, stall)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []byte
	for {
		_, data, err := r.Next(nil)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, data...)
	}
}
