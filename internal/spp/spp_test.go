package spp

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	grpcpeer "google.golang.org/grpc/peer"
)

// peer is an SPP sender that misbehaves on demand; the real senders are
// tested in their services.
type peer struct {
	sppv1.UnimplementedChunkServiceServer
	data  []byte
	m     *manifest.Manifest
	serve func(p *peer, req *sppv1.FetchRequest, s grpc.ServerStreamingServer[sppv1.FetchResponse]) error
}

func (p *peer) Fetch(req *sppv1.FetchRequest, s grpc.ServerStreamingServer[sppv1.FetchResponse]) error {
	return p.serve(p, req, s)
}

func (p *peer) chunk(i int) []byte {
	off := p.m.ChunkOffset(i)
	return p.data[off : off+int64(p.m.ChunkLen(i))]
}

func honest(p *peer, req *sppv1.FetchRequest, s grpc.ServerStreamingServer[sppv1.FetchResponse]) error {
	for _, i := range req.Chunks {
		if err := SendChunk(s, int(i), p.chunk(int(i))); err != nil {
			return err
		}
	}
	return nil
}

// codecs are the client's decoders a reader must work with: gRPC's own
// protobuf codec, and p2pd's, which decodes a piece in place.
var codecs = []struct {
	name string
	opts []grpc.DialOption
}{
	{"proto", nil},
	{"spp", []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.ForceCodecV2(Codec()))}},
}

func start(t *testing.T, serve func(*peer, *sppv1.FetchRequest, grpc.ServerStreamingServer[sppv1.FetchResponse]) error, dial ...grpc.DialOption) (*peer, sppv1.ChunkServiceClient) {
	t.Helper()
	data, m := testData(t)
	p := &peer{data: data, m: m, serve: serve}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	sppv1.RegisterChunkServiceServer(srv, p)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	pool := NewPool(append(dial, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	t.Cleanup(pool.Close)
	c, err := pool.Client(l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return p, c
}

// testData is a file of four chunks, the last one short, and its manifest.
func testData(t *testing.T) ([]byte, *manifest.Manifest) {
	t.Helper()
	const chunk = 600 << 10 // not a multiple of PieceSize: pieces of uneven size
	data := make([]byte, 3*chunk+1000)
	rand.Read(data)
	m, err := manifest.Build(context.Background(), bytes.NewReader(data), int64(len(data)), chunk, 0)
	if err != nil {
		t.Fatal(err)
	}
	return data, m
}

func readAll(p *peer, c sppv1.ChunkServiceClient, chunks []uint32, stall time.Duration) ([]byte, []uint32, error) {
	r, err := Open(context.Background(), c, p.m, &sppv1.FetchRequest{Root: p.m.Root[:], Chunks: chunks}, stall)
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	var out []byte
	var buf []byte
	for {
		_, data, err := r.Next(buf)
		if err == io.EOF {
			return out, r.Remaining(), nil
		}
		if err != nil {
			return out, r.Remaining(), err
		}
		out = append(out, data...)
		buf = data
	}
}

func TestHonestPeerInAnyOrder(t *testing.T) {
	for _, cd := range codecs {
		t.Run(cd.name, func(t *testing.T) {
			p, c := start(t, honest, cd.opts...)
			out, rest, err := readAll(p, c, []uint32{3, 0, 2, 1}, time.Minute)
			if err != nil || len(rest) != 0 {
				t.Fatal(err, rest)
			}
			want := append(append(append(bytes.Clone(p.chunk(3)), p.chunk(0)...), p.chunk(2)...), p.chunk(1)...)
			if !bytes.Equal(out, want) {
				t.Fatal("bytes differ")
			}
		})
	}
}

// lending is p2pd's codec, counting the FetchResponses it was given room
// to decode into.
type lending struct {
	encoding.CodecV2
	lent atomic.Int64
}

func (l *lending) Unmarshal(data mem.BufferSlice, v any) error {
	if m, ok := v.(*sppv1.FetchResponse); ok && cap(m.Data) > 0 {
		l.lent.Add(1)
	}
	return l.CodecV2.Unmarshal(data, v)
}

// A chunk is decoded into the buffer given to Next, not into a slice of
// its own then copied; a buffer too small is replaced.
func TestNextDecodesIntoTheBuffer(t *testing.T) {
	codec := &lending{CodecV2: Codec()}
	p, c := start(t, honest, grpc.WithDefaultCallOptions(grpc.ForceCodecV2(codec)))
	r, err := Open(context.Background(), c, p.m, &sppv1.FetchRequest{Root: p.m.Root[:], Chunks: []uint32{0, 3}}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, 10, p.m.ChunkLen(0)+5)
	_, data, err := r.Next(buf)
	if err != nil || !bytes.Equal(data, p.chunk(0)) {
		t.Fatalf("chunk 0: %v", err)
	}
	if &data[0] != &buf[:1][0] || codec.lent.Load() == 0 {
		t.Errorf("chunk 0 was not decoded into the buffer given (%d pieces lent room)", codec.lent.Load())
	}
	small := make([]byte, 0, 16)
	_, data, err = r.Next(small)
	if err != nil || !bytes.Equal(data, p.chunk(3)) || !bytes.Equal(small[:16], make([]byte, 16)) {
		t.Fatalf("chunk 3 with a small buffer: %v", err)
	}
}

func TestMisbehavingPeers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		serve func(*peer, *sppv1.FetchRequest, grpc.ServerStreamingServer[sppv1.FetchResponse]) error
		want  error
	}{
		{"flipped byte", func(p *peer, req *sppv1.FetchRequest, s grpc.ServerStreamingServer[sppv1.FetchResponse]) error {
			bad := bytes.Clone(p.chunk(1))
			bad[len(bad)/2] ^= 0x40
			SendChunk(s, 0, p.chunk(0))
			return SendChunk(s, 1, bad)
		}, manifest.ErrDigestMismatch},
		{"wrong chunk", func(p *peer, req *sppv1.FetchRequest, s grpc.ServerStreamingServer[sppv1.FetchResponse]) error {
			SendChunk(s, 0, p.chunk(0))
			return SendChunk(s, 2, p.chunk(2))
		}, ErrProtocol},
		{"piece past the chunk's end", func(p *peer, req *sppv1.FetchRequest, s grpc.ServerStreamingServer[sppv1.FetchResponse]) error {
			SendChunk(s, 0, p.chunk(0))
			SendChunk(s, 1, p.chunk(1)[:100])
			return s.Send(&sppv1.FetchResponse{Chunk: 1, Offset: 100, Data: make([]byte, p.m.ChunkLen(1))})
		}, ErrProtocol},
		{"overlong piece", func(p *peer, req *sppv1.FetchRequest, s grpc.ServerStreamingServer[sppv1.FetchResponse]) error {
			SendChunk(s, 0, p.chunk(0))
			return s.Send(&sppv1.FetchResponse{Chunk: 1, Data: make([]byte, p.m.ChunkLen(1)+1)})
		}, ErrProtocol},
		{"wrong offset", func(p *peer, req *sppv1.FetchRequest, s grpc.ServerStreamingServer[sppv1.FetchResponse]) error {
			SendChunk(s, 0, p.chunk(0))
			return s.Send(&sppv1.FetchResponse{Chunk: 1, Offset: 7, Data: p.chunk(1)[7:]})
		}, ErrProtocol},
		{"ends early", func(p *peer, req *sppv1.FetchRequest, s grpc.ServerStreamingServer[sppv1.FetchResponse]) error {
			SendChunk(s, 0, p.chunk(0))
			return s.Send(&sppv1.FetchResponse{Chunk: 1, Data: p.chunk(1)[:100]})
		}, ErrProtocol},
		{"stalls", func(p *peer, req *sppv1.FetchRequest, s grpc.ServerStreamingServer[sppv1.FetchResponse]) error {
			SendChunk(s, 0, p.chunk(0))
			<-s.Context().Done()
			return nil
		}, ErrStalled},
	} {
		for _, cd := range codecs {
			t.Run(tc.name+"/"+cd.name, func(t *testing.T) {
				p, c := start(t, tc.serve, cd.opts...)
				out, rest, err := readAll(p, c, []uint32{0, 1}, time.Second)
				if !errors.Is(err, tc.want) {
					t.Fatalf("err %v, want %v", err, tc.want)
				}
				// The verified first chunk is delivered; nothing of the bad one.
				if !bytes.Equal(out, p.chunk(0)) || len(rest) != 1 || rest[0] != 1 {
					t.Fatalf("delivered %d bytes, remaining %v", len(out), rest)
				}
			})
		}
	}
}

// A pool spreads the streams to one node over ConnsPerNode connections.
func TestPoolSpreadsStreamsOverConnections(t *testing.T) {
	var mu sync.Mutex
	from := map[string]int{}
	p, c := start(t, func(p *peer, req *sppv1.FetchRequest, s grpc.ServerStreamingServer[sppv1.FetchResponse]) error {
		if pr, ok := grpcpeer.FromContext(s.Context()); ok {
			mu.Lock()
			from[pr.Addr.String()]++
			mu.Unlock()
		}
		return honest(p, req, s)
	})
	for i := range 3 * ConnsPerNode {
		out, _, err := readAll(p, c, []uint32{uint32(i % 4)}, time.Minute)
		if err != nil || !bytes.Equal(out, p.chunk(i%4)) {
			t.Fatalf("fetch %d: %v", i, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(from) != ConnsPerNode {
		t.Fatalf("streams came over %d connections (%v), want %d", len(from), from, ConnsPerNode)
	}
	for a, n := range from {
		if n != 3 {
			t.Fatalf("connection %s carried %d streams, want 3 (%v)", a, n, from)
		}
	}
}

// A piece longer than what is left of its chunk is refused, and never
// written past the chunk's end into the rest of the buffer given.
func TestPieceNeverWritesPastTheChunk(t *testing.T) {
	p, c := start(t, func(p *peer, req *sppv1.FetchRequest, s grpc.ServerStreamingServer[sppv1.FetchResponse]) error {
		return s.Send(&sppv1.FetchResponse{Chunk: 0, Data: make([]byte, p.m.ChunkLen(0)+32)})
	}, codecs[1].opts...)
	r, err := Open(context.Background(), c, p.m, &sppv1.FetchRequest{Root: p.m.Root[:], Chunks: []uint32{0}}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	size := p.m.ChunkLen(0)
	buf := bytes.Repeat([]byte{0xAA}, size+64)
	if _, _, err := r.Next(buf[:0]); !errors.Is(err, ErrProtocol) {
		t.Fatalf("err %v, want %v", err, ErrProtocol)
	}
	if !bytes.Equal(buf[size:], bytes.Repeat([]byte{0xAA}, 64)) {
		t.Error("the bytes past the chunk's end were written")
	}
}
