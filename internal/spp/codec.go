package spp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
)

// Codec is the gRPC codec of p2pd's nodes (see service.GRPCServerOptions
// and GRPCDialOptions). It is protobuf, wire-compatible with any gRPC
// peer, with three differences that matter for chunk-sized messages:
//   - buffers come from Buffers, which does not zero them;
//   - a received FetchResponse is decoded straight from the frames it
//     arrived in into its data slice, which may be lent (a ChunkReader
//     lends the place in the chunk buffer the piece belongs at). gRPC's
//     codec copies the frames into one contiguous buffer first, and then
//     into the message; the reader copied that into the chunk: two full
//     copies of every chunk more, and a chunk-sized allocation each;
//   - a FetchResponse to send is not copied at all: its encoding is a few
//     header bytes followed by its data where it lies, which gRPC's writer
//     copies into HTTP/2 frames. The data must therefore stay unmodified
//     until gRPC has written it, after Send returned (see SendChunk and
//     SendBuffer).
func Codec() encoding.CodecV2 { return codec{} }

type codec struct{}

// Name is protobuf's: the content type stays application/grpc+proto.
func (codec) Name() string { return "proto" }

func messageOf(v any) (proto.Message, error) {
	switch m := v.(type) {
	case protoadapt.MessageV2:
		return m, nil
	case protoadapt.MessageV1:
		return protoadapt.MessageV2Of(m), nil
	}
	return nil, fmt.Errorf("spp codec: %T is not a protobuf message", v)
}

func (codec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*sppv1.FetchResponse); ok {
		return encodeFetchResponse(r), nil
	}
	m, err := messageOf(v)
	if err != nil {
		return nil, err
	}
	size := proto.Size(m)
	opts := proto.MarshalOptions{UseCachedSize: true} // the size was just computed
	if mem.IsBelowBufferPoolingThreshold(size) {
		b, err := opts.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	buf := Buffers.Get(size)
	out, err := opts.MarshalAppend((*buf)[:0], m)
	if err != nil {
		Buffers.Put(buf)
		return nil, err
	}
	*buf = out
	return mem.BufferSlice{mem.NewBuffer(buf, Buffers)}, nil
}

func (codec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*sppv1.FetchResponse); ok {
		return decodeFetchResponse(data, r)
	}
	m, err := messageOf(v)
	if err != nil {
		return err
	}
	buf := data.MaterializeToBuffer(Buffers)
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}

// encodeFetchResponse encodes m as protobuf does (fields in number
// order, zero values left out) without copying its data: the header
// bytes, then m.Data itself, or the buffer SendBuffer lent with it, whose
// reference passes to gRPC (which frees it once written).
func encodeFetchResponse(m *sppv1.FetchResponse) mem.BufferSlice {
	hdr := make([]byte, 0, 3*(1+binary.MaxVarintLen32))
	if m.Chunk != 0 {
		hdr = append(hdr, 1<<3) // field 1, varint
		hdr = binary.AppendUvarint(hdr, uint64(m.Chunk))
	}
	if m.Offset != 0 {
		hdr = append(hdr, 2<<3) // field 2, varint
		hdr = binary.AppendUvarint(hdr, uint64(m.Offset))
	}
	lent := claimLent(m)
	if len(m.Data) == 0 {
		if lent != nil {
			lent.Free()
		}
		return mem.BufferSlice{mem.SliceBuffer(hdr)}
	}
	hdr = append(hdr, 3<<3|2) // field 3, length-delimited
	hdr = binary.AppendUvarint(hdr, uint64(len(m.Data)))
	if lent != nil {
		return mem.BufferSlice{mem.SliceBuffer(hdr), lent}
	}
	return mem.BufferSlice{mem.SliceBuffer(hdr), mem.SliceBuffer(m.Data)}
}

var errWire = errors.New("spp codec: malformed FetchResponse")

// decodeFetchResponse parses the protobuf encoding of a FetchResponse
// (chunk = 1, offset = 2, data = 3), copying the data once, from the
// received buffers into m.Data's own room when it has enough, else into
// a slice of its own. Unknown fields are skipped.
func decodeFetchResponse(data mem.BufferSlice, m *sppv1.FetchResponse) error {
	r := data.Reader()
	defer r.Close()
	for r.Remaining() > 0 {
		tag, err := binary.ReadUvarint(r)
		if err != nil {
			return errWire
		}
		field, wire := tag>>3, tag&7
		switch wire {
		case 0: // varint
			v, err := binary.ReadUvarint(r)
			if err != nil {
				return errWire
			}
			switch field {
			case 1:
				m.Chunk = uint32(v)
			case 2:
				m.Offset = uint32(v)
			}
		case 2: // length-delimited
			n, err := binary.ReadUvarint(r)
			if err != nil || n > uint64(r.Remaining()) {
				return errWire
			}
			if field != 3 {
				if _, err := r.Discard(int(n)); err != nil {
					return errWire
				}
				continue
			}
			// Into the room m.Data brings, if it has enough (ChunkReader
			// lends the piece's place in its chunk buffer), else a slice
			// of its own.
			var b []byte
			if uint64(cap(m.Data)) >= n {
				b = m.Data[:n]
			} else {
				b = make([]byte, n)
			}
			if _, err := io.ReadFull(r, b); err != nil {
				return errWire
			}
			m.Data = b
		case 1: // 64-bit
			if _, err := r.Discard(8); err != nil {
				return errWire
			}
		case 5: // 32-bit
			if _, err := r.Discard(4); err != nil {
				return errWire
			}
		default:
			return errWire
		}
	}
	return nil
}
