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
// peer, with two differences that matter for chunk-sized messages:
// buffers come from Buffers, which does not zero them, and a received
// FetchResponse is decoded straight from the frames it arrived in into its
// data slice. gRPC's codec copies the frames into one contiguous buffer
// first, and then into the message: one full copy of every chunk more.
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

var errWire = errors.New("spp codec: malformed FetchResponse")

// decodeFetchResponse parses the protobuf encoding of a FetchResponse
// (chunk = 1, offset = 2, data = 3), copying the data once, from the
// received buffers into a slice of its own. Unknown fields are skipped.
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
			b := make([]byte, n)
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
