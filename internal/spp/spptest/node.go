package spptest

import (
	"bytes"
	"context"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/service"
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

// Faults make a Node misbehave; the zero value (Honest) answers what the
// node holds and NOT_FOUND for the rest. Chunk faults apply to a chunk's
// index in any file the node serves.
type Faults struct {
	// Silent accepts every call and never answers it, as a stopped
	// (SIGSTOP) or cut-off process looks to its clients.
	Silent bool
	// WrongManifest answers another root's valid manifest.
	WrongManifest bool

	Corrupt    map[int]bool // chunks sent with one byte flipped
	CorruptAll bool         // every chunk sent with one byte flipped
	Missing    map[int]bool // chunks answered NOT_FOUND
	Stall      map[int]bool // chunks never sent: the stream hangs until its client gives up
	StallOnce  map[int]bool // chunks that hang the first time they are asked for
	// DieAfter stops the whole gRPC server once this many chunks were
	// sent (0: never), as a process that crashes mid-stream.
	DieAfter int
	// Hold, when not nil, holds every Fetch asking for a chunk at or past
	// HoldFrom until Hold is closed (or the client gives up).
	Hold     <-chan struct{}
	HoldFrom int
	// Pace makes a busy node: it sends one chunk at a time over all its
	// streams, in the order they asked, each after this long, so most
	// streams wait in its queue while it delivers on another.
	Pace time.Duration
}

// The faults most tests want.
var (
	Honest        = Faults{}
	Silent        = Faults{Silent: true}
	WrongManifest = Faults{WrongManifest: true}
)

// Node is an SPP node on a real gRPC server, serving files from memory,
// with faults on demand.
type Node struct {
	sppv1.UnimplementedChunkServiceServer
	Addr string

	srv       *grpc.Server
	files     map[manifest.Digest]*File
	release   chan struct{}
	manifests atomic.Int64 // GetManifest calls
	fetches   atomic.Int64 // Fetch calls
	requested atomic.Int64 // chunks asked for, counted before any is sent
	sent      atomic.Int64 // chunks sent whole

	mu      sync.Mutex
	faults  Faults
	stalled map[int]bool  // StallOnce chunks already stalled
	turn    chan struct{} // the one chunk being sent when paced
}

// Start serves files on a free loopback port until the test ends.
func Start(t testing.TB, f Faults, files ...*File) *Node {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return Serve(t, l, f, files...)
}

// Serve serves files on l until the test ends; Addr is l's address. l may
// wrap a real listener (an emulated link, say).
func Serve(t testing.TB, l net.Listener, f Faults, files ...*File) *Node {
	t.Helper()
	n := &Node{Addr: l.Addr().String(), files: map[manifest.Digest]*File{}, faults: f, release: make(chan struct{}), turn: make(chan struct{}, 1)}
	for _, f := range files {
		n.files[f.M.Root] = f
	}
	n.srv = grpc.NewServer(service.GRPCServerOptions()...)
	sppv1.RegisterChunkServiceServer(n.srv, n)
	go n.srv.Serve(l)
	t.Cleanup(func() {
		close(n.release) // a silent handler returns, so Stop does not wait on it
		n.srv.Stop()
	})
	return n
}

// SetFaults changes how the node answers from now on.
func (n *Node) SetFaults(f Faults) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.faults = f
}

func (n *Node) current() Faults {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.faults
}

// ManifestCalls counts the GetManifest calls the node got.
func (n *Node) ManifestCalls() int64 { return n.manifests.Load() }

// FetchCalls counts the Fetch calls the node got.
func (n *Node) FetchCalls() int64 { return n.fetches.Load() }

// RequestedChunks counts the chunks asked for over all Fetch calls for a
// file the node serves, whether sent or not.
func (n *Node) RequestedChunks() int64 { return n.requested.Load() }

// SentChunks counts the chunks sent whole.
func (n *Node) SentChunks() int64 { return n.sent.Load() }

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
	fl := n.current()
	if fl.Silent {
		return nil, n.silence(ctx)
	}
	f, err := n.file(req.GetRoot())
	if err != nil {
		return nil, err
	}
	p := f.M.ToProto()
	if fl.WrongManifest {
		data := append([]byte("not "), f.Data...)
		other, err := manifest.Build(ctx, bytes.NewReader(data), int64(len(data)), f.M.ChunkSize, 1)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		p = other.ToProto()
	}
	return &sppv1.GetManifestResponse{Manifest: p}, nil
}

// Fetch sends the chunks asked for, in order, as its faults allow.
func (n *Node) Fetch(req *sppv1.FetchRequest, stream grpc.ServerStreamingServer[sppv1.FetchResponse]) error {
	n.fetches.Add(1)
	ctx := stream.Context()
	fl := n.current()
	if fl.Silent {
		return n.silence(ctx)
	}
	spp.Accepted(stream)
	f, err := n.file(req.Root)
	if err != nil {
		return err
	}
	n.requested.Add(int64(len(req.Chunks)))
	if fl.Hold != nil && slices.ContainsFunc(req.Chunks, func(c uint32) bool { return int(c) >= fl.HoldFrom }) {
		select {
		case <-fl.Hold:
		case <-ctx.Done():
			return ctx.Err()
		case <-n.release:
			return status.Error(codes.Unavailable, "test over")
		}
	}
	for _, c := range req.Chunks {
		i := int(c)
		if i >= f.M.ChunkCount() {
			return status.Errorf(codes.OutOfRange, "chunk %d of %d", c, f.M.ChunkCount())
		}
		n.mu.Lock()
		fl = n.faults
		stallNow := fl.StallOnce[i] && !n.stalled[i]
		if stallNow {
			if n.stalled == nil {
				n.stalled = map[int]bool{}
			}
			n.stalled[i] = true
		}
		n.mu.Unlock()
		switch {
		case fl.DieAfter > 0 && n.sent.Load() >= int64(fl.DieAfter):
			go n.srv.Stop()
			return n.silence(ctx)
		case fl.Stall[i] || stallNow:
			return n.silence(ctx)
		case fl.Missing[i]:
			return status.Errorf(codes.NotFound, "chunk %d not held", i)
		}
		if fl.Pace > 0 {
			// Streams queue for the node's one sender, first come first
			// served (a channel's blocked senders are woken in order).
			select {
			case n.turn <- struct{}{}:
			case <-ctx.Done():
				return ctx.Err()
			}
			time.Sleep(fl.Pace)
		}
		data := f.Chunk(i)
		if fl.CorruptAll || fl.Corrupt[i] {
			data = bytes.Clone(data)
			data[len(data)/2] ^= 0x55
		}
		err := spp.SendChunk(stream, i, data)
		if fl.Pace > 0 {
			<-n.turn
		}
		if err != nil {
			return err
		}
		n.sent.Add(1)
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
