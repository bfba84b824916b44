package spp

import (
	"bytes"
	"math/rand/v2"
	"testing"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// split cuts b into a BufferSlice of random pieces, as frames arrive.
func split(b []byte, rng *rand.Rand) mem.BufferSlice {
	var s mem.BufferSlice
	for len(b) > 0 {
		n := min(len(b), 1+rng.IntN(20000))
		s = append(s, mem.SliceBuffer(bytes.Clone(b[:n])))
		b = b[n:]
	}
	return s
}

func TestCodecDecodesFetchResponseLikeProto(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	c := Codec()
	for i := range 200 {
		want := &sppv1.FetchResponse{Chunk: rng.Uint32(), Offset: rng.Uint32N(1 << 20)}
		if i%7 != 0 {
			want.Data = make([]byte, rng.IntN(1<<20+1))
			for j := range want.Data {
				want.Data[j] = byte(rng.Uint32())
			}
		}
		wire, err := proto.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		if i%5 == 0 {
			// Fields from a newer peer are skipped.
			wire = protowire.AppendTag(wire, 9, protowire.BytesType)
			wire = protowire.AppendBytes(wire, []byte("future"))
			wire = protowire.AppendTag(wire, 10, protowire.Fixed64Type)
			wire = protowire.AppendFixed64(wire, 7)
			wire = protowire.AppendTag(wire, 11, protowire.Fixed32Type)
			wire = protowire.AppendFixed32(wire, 7)
			wire = protowire.AppendTag(wire, 12, protowire.VarintType)
			wire = protowire.AppendVarint(wire, 1<<40)
		}
		got := &sppv1.FetchResponse{}
		if err := c.Unmarshal(split(wire, rng), got); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if got.Chunk != want.Chunk || got.Offset != want.Offset || !bytes.Equal(got.Data, want.Data) {
			t.Fatalf("message %d: decoded differently", i)
		}
	}
	// Round trip through the codec's own Marshal, which pools big messages.
	big := &sppv1.FetchResponse{Chunk: 3, Offset: 0, Data: bytes.Repeat([]byte("p2pd"), 1<<18)}
	out, err := c.Marshal(big)
	if err != nil {
		t.Fatal(err)
	}
	got := &sppv1.FetchResponse{}
	if err := c.Unmarshal(out, got); err != nil || !proto.Equal(got, big) {
		t.Fatalf("round trip: %v", err)
	}
	out.Free()
	// Other messages go through protobuf.
	req := &sppv1.FetchRequest{Root: []byte("r"), Chunks: []uint32{1, 2, 3}, LocalOnly: true}
	out, err = c.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	back := &sppv1.FetchRequest{}
	if err := c.Unmarshal(out, back); err != nil || !proto.Equal(back, req) {
		t.Fatalf("FetchRequest round trip: %v", err)
	}
}

func TestCodecRejectsTruncatedData(t *testing.T) {
	wire, _ := proto.Marshal(&sppv1.FetchResponse{Chunk: 1, Data: make([]byte, 1000)})
	for _, cut := range []int{1, 3, len(wire) - 1} {
		if err := Codec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire[:cut])}, &sppv1.FetchResponse{}); err == nil {
			t.Errorf("truncated at %d: decoded", cut)
		}
	}
}

// A FetchResponse whose Data has room enough is decoded into that room (a
// ChunkReader lends the piece's place in its chunk); one with too little
// gets a slice of its own, and the room is left alone.
func TestCodecDecodesIntoLentRoom(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	data := make([]byte, 1000)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	wire, _ := proto.Marshal(&sppv1.FetchResponse{Chunk: 2, Offset: 4096, Data: data})
	room := make([]byte, 0, 2000)
	m := &sppv1.FetchResponse{Data: room}
	if err := Codec().Unmarshal(split(wire, rng), m); err != nil || !bytes.Equal(m.Data, data) || m.Offset != 4096 {
		t.Fatalf("decoded %v, offset %d", err, m.Offset)
	}
	if &m.Data[0] != &room[:1][0] {
		t.Error("data not decoded into the room lent")
	}
	small := make([]byte, 0, 500)
	m = &sppv1.FetchResponse{Data: small}
	if err := Codec().Unmarshal(split(wire, rng), m); err != nil || !bytes.Equal(m.Data, data) {
		t.Fatalf("decoded %v", err)
	}
	if !bytes.Equal(small[:500], make([]byte, 500)) {
		t.Error("a room too small was written to")
	}
}
