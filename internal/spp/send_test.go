package spp

import (
	"bytes"
	"net"
	"testing"
	"time"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/protobuf/proto"
)

// The codec sends a FetchResponse without copying its data; what goes on
// the wire must still be exactly protobuf's encoding, so any gRPC peer
// reads it.
func TestCodecEncodesFetchResponseAsProtobuf(t *testing.T) {
	data := bytes.Repeat([]byte{7, 0, 255}, 100_000)
	for _, m := range []*sppv1.FetchResponse{
		{},
		{Chunk: 1},
		{Offset: 1 << 20},
		{Chunk: 1<<32 - 1, Offset: 1<<32 - 1, Data: []byte{0}},
		{Chunk: 127, Offset: 128, Data: data},
		{Data: data[:1]},
	} {
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out, err := Codec().Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if got := out.Materialize(); !bytes.Equal(got, want) {
			t.Fatalf("chunk %d offset %d, %d bytes: encoded %x..., protobuf %x...", m.Chunk, m.Offset, len(m.Data), got[:min(len(got), 12)], want[:min(len(want), 12)])
		}
		out.Free()
	}
}

// A buffer handed over with SendBuffer must not be reused while gRPC may
// still write it. The peer reads slowly (small flow-control windows), so
// pieces wait in gRPC's writer while the handler goes on; meanwhile the
// handler takes buffers from the pool and scribbles over them, as other
// streams would. A buffer given back too early would be scribbled over
// before it was written, and its chunk would fail verification.
func TestSendBufferKeepsBuffersUntilWritten(t *testing.T) {
	base := Buffers.InUse()
	scribble := func(n int) {
		for range 4 {
			b := Buffers.Get(n)
			for i := range *b {
				(*b)[i] = 0xEE
			}
			Buffers.Put(b)
		}
	}
	p := &peer{serve: func(p *peer, req *sppv1.FetchRequest, s grpc.ServerStreamingServer[sppv1.FetchResponse]) error {
		for _, i := range req.Chunks {
			bp := Buffers.Get(p.m.ChunkLen(int(i)))
			copy(*bp, p.chunk(int(i)))
			if err := SendBuffer(s, int(i), bp); err != nil {
				return err
			}
			scribble(p.m.ChunkLen(int(i)))
		}
		return nil
	}}
	p.data, p.m = testData(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodecV2(Codec()), experimental.BufferPool(Buffers))
	sppv1.RegisterChunkServiceServer(srv, p)
	go srv.Serve(l)
	defer srv.Stop()
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(Codec())))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	chunks := []uint32{0, 1, 2, 3, 2, 1, 0}
	out, rest, err := readAll(p, sppv1.NewChunkServiceClient(conn), chunks, time.Minute)
	if err != nil || len(rest) != 0 {
		t.Fatalf("read: %v (%d chunks left)", err, len(rest))
	}
	var want []byte
	for _, i := range chunks {
		want = append(want, p.chunk(int(i))...)
	}
	if !bytes.Equal(out, want) {
		t.Fatal("bytes differ")
	}
	// Every buffer comes back once written. gRPC frees the last one after
	// the handler returned, on its own goroutine: wait for it (bounded).
	deadline := time.Now().Add(30 * time.Second)
	for Buffers.InUse() != base && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := Buffers.InUse() - base; n != 0 {
		t.Fatalf("%d buffers never came back to the pool", n)
	}
}

// A handler on a server with another codec (gRPC's, which copies) may
// use SendBuffer too: the buffer comes back all the same.
func TestSendBufferWithAnotherCodec(t *testing.T) {
	base := Buffers.InUse()
	p, c := start(t, func(p *peer, req *sppv1.FetchRequest, s grpc.ServerStreamingServer[sppv1.FetchResponse]) error {
		for _, i := range req.Chunks {
			bp := Buffers.Get(p.m.ChunkLen(int(i)))
			copy(*bp, p.chunk(int(i)))
			if err := SendBuffer(s, int(i), bp); err != nil {
				return err
			}
		}
		return nil
	})
	out, _, err := readAll(p, c, []uint32{3, 1}, time.Minute)
	if err != nil || !bytes.Equal(out, append(bytes.Clone(p.chunk(3)), p.chunk(1)...)) {
		t.Fatalf("read: %v", err)
	}
	if n := Buffers.InUse() - base; n != 0 {
		t.Fatalf("%d buffers never came back to the pool", n)
	}
}
