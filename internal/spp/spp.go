// Package spp holds both ends of SPP, p2pd's chunk transfer protocol: the
// sender cuts verified chunks into pieces, the receiver reassembles and
// verifies each whole chunk before anyone may use it.
package spp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/telemetry"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
)

// PieceSize is the largest piece a sender puts in one message: well under
// gRPC's 4 MiB default message limit, and a whole chunk of the default
// size, which the receiver then keeps as the chunk's buffer instead of
// reassembling pieces into one.
const PieceSize = 1 << 20

// MaxChunksPerFetch bounds the chunk list of one Fetch request, so a
// hostile request cannot make a node queue unbounded work.
const MaxChunksPerFetch = 4096

// ErrProtocol reports a peer that broke the piece ordering rules.
var ErrProtocol = errors.New("spp protocol violation")

// ErrStalled reports a stream that delivered no piece within the stall
// timeout.
var ErrStalled = errors.New("spp stream stalled")

// RelayHeader is the gRPC metadata key of a Fetch sent to a chunk's home
// to fetch through it (a relay). The home fetches what it misses from
// holders and origins only, never through another relay, so a relay
// never cascades through the swarm.
const RelayHeader = "p2pd-relay"

// SendChunk sends one chunk as pieces. data must already be verified,
// and must stay unmodified for as long as gRPC may write it, which is
// after SendChunk returned, even after the handler returned: the codec
// (Codec) sends it from where it lies instead of copying it. Shared bytes
// nobody modifies (a memory cache's, a finished fetch's) are sent this
// way; a buffer that is to be reused goes through SendBuffer.
func SendChunk(stream grpc.ServerStreamingServer[sppv1.FetchResponse], idx int, data []byte) error {
	msg := &sppv1.FetchResponse{Chunk: uint32(idx)}
	for off := 0; off < len(data); off += PieceSize {
		msg.Offset = uint32(off)
		msg.Data = data[off:min(off+PieceSize, len(data))]
		if err := stream.Send(msg); err != nil {
			return err
		}
	}
	return nil
}

// SendBuffer sends one chunk, the verified bytes *bp, and hands the
// buffer (from Buffers) to gRPC, which puts it back into Buffers once it
// has written the last piece or dropped the stream: the chunk is sent
// without a copy, and the buffer is reused only when no piece of it is
// still waiting to be written. The caller must not touch bp afterwards,
// whatever the result.
func SendBuffer(stream grpc.ServerStreamingServer[sppv1.FetchResponse], idx int, bp *[]byte) error {
	data := *bp
	if mem.IsBelowBufferPoolingThreshold(cap(data)) {
		// gRPC would not give so small a buffer back: a copy is cheaper.
		c := bytes.Clone(data)
		Buffers.Put(bp)
		return SendChunk(stream, idx, c)
	}
	whole := mem.NewBuffer(bp, Buffers) // our reference, dropped on return
	defer whole.Free()
	msg := &sppv1.FetchResponse{Chunk: uint32(idx)}
	for off := 0; off < len(data); off += PieceSize {
		end := min(off+PieceSize, len(data))
		msg.Offset = uint32(off)
		msg.Data = data[off:end]
		lend(msg, whole.Slice(off, end))
		err := stream.Send(msg)
		if b := claimLent(msg); b != nil {
			// Not encoded by Codec (another codec copies the data): the
			// reference was never handed over.
			b.Free()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// lent holds, for a FetchResponse SendBuffer is sending, a reference to
// its data's pool buffer, which Codec's Marshal claims and passes to gRPC
// with the encoded message.
var lent sync.Map // *sppv1.FetchResponse -> mem.Buffer

func lend(m *sppv1.FetchResponse, b mem.Buffer) { lent.Store(m, b) }

// claimLent returns the buffer lent with m, once, or nil.
func claimLent(m *sppv1.FetchResponse) mem.Buffer {
	if v, ok := lent.LoadAndDelete(m); ok {
		return v.(mem.Buffer)
	}
	return nil
}

// ChunkReader receives the chunks of one Fetch stream, in request order,
// and hands out only verified chunks.
type ChunkReader struct {
	ctx     context.Context // carries the caller's span, for digest failures
	stream  grpc.ServerStreamingClient[sppv1.FetchResponse]
	m       *manifest.Manifest
	want    []uint32
	pos     int
	cancel  context.CancelFunc
	stall   *watchdog // nil: no stall timeout
	timeout time.Duration
	drained bool
	recvd   atomic.Int64
	// responded: the response headers arrived.
	responded atomic.Bool
}

// Open starts a Fetch and returns a reader for its chunks. The stream is
// cancelled if no piece arrives for stall (0: never) while the reader
// waits in Next, and Next then fails with ErrStalled. Close must be called
// to release the stream.
func Open(ctx context.Context, c sppv1.ChunkServiceClient, m *manifest.Manifest, req *sppv1.FetchRequest, stall time.Duration) (*ChunkReader, error) {
	return open(ctx, c, m, req, Stall{Timeout: stall}, realAfterFunc, time.Now)
}

// OpenStall is Open with the sender's liveness taken into account: see
// Stall.
func OpenStall(ctx context.Context, c sppv1.ChunkServiceClient, m *manifest.Manifest, req *sppv1.FetchRequest, st Stall) (*ChunkReader, error) {
	return open(ctx, c, m, req, st, realAfterFunc, time.Now)
}

// open is OpenStall with the clock that drives the stall timeout.
func open(ctx context.Context, c sppv1.ChunkServiceClient, m *manifest.Manifest, req *sppv1.FetchRequest, st Stall, after afterFunc, now func() time.Time) (*ChunkReader, error) {
	if len(req.Chunks) > MaxChunksPerFetch {
		return nil, fmt.Errorf("fetch %d chunks: more than %d", len(req.Chunks), MaxChunksPerFetch)
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &ChunkReader{ctx: ctx, m: m, want: req.Chunks, timeout: st.Timeout}
	if st.Timeout > 0 {
		r.stall = newWatchdog(after, now, st, r.responded.Load, cancel)
	}
	stream, err := c.Fetch(ctx, req)
	if err != nil {
		r.stop()
		cancel()
		return nil, err
	}
	r.stream = stream
	context.AfterFunc(ctx, r.stop)
	r.cancel = cancel
	go func() {
		// Returns with the response headers, or when the stream ends.
		if _, err := stream.Header(); err == nil {
			r.responded.Store(true)
			if st.Peer != nil {
				st.Peer.Progress(now()) // the node is alive
			}
		}
	}()
	return r, nil
}

// Accepted tells a Fetch's client at once that the server took the
// request (its response headers), before the first chunk is read: a
// client that must tell a stopped node from a slow one (Responded) then
// need not wait for a whole piece over a slow link.
func Accepted(stream grpc.ServerStreamingServer[sppv1.FetchResponse]) {
	stream.SendHeader(nil) // an error ends the stream, which Send reports
}

// Responded reports whether the server has answered anything yet: its
// response headers (Accepted) or a piece. Safe to call while Next runs.
func (r *ChunkReader) Responded() bool { return r.responded.Load() || r.recvd.Load() > 0 }

// Close releases the stream. A stream whose chunks were all delivered is
// first read to its end (bounded by the stall timeout), so it ends with
// the sender's status rather than cancelled: traces and logs then show a
// fetch that succeeded as one.
func (r *ChunkReader) Close() {
	if r.stream != nil && r.stall != nil && r.pos == len(r.want) && !r.drained {
		r.drained = true
		r.stall.wait()
		r.stream.Recv() // io.EOF once the sender returned
	}
	r.stop()
	if r.cancel != nil {
		r.cancel()
	}
}

func (r *ChunkReader) stop() {
	if r.stall != nil {
		r.stall.close()
	}
}

// Remaining returns the requested chunks not yet delivered.
func (r *ChunkReader) Remaining() []uint32 { return r.want[r.pos:] }

// Received returns the piece bytes received so far, verified or not: the
// progress of a stream cut short, for rate estimates, or whether a source
// has sent anything yet. Safe to call while Next runs.
func (r *ChunkReader) Received() int64 { return r.recvd.Load() }

// Next receives the next requested chunk into buf (grown if too small),
// verifies it and returns its index and bytes. It returns io.EOF after the
// last requested chunk. An error wrapping manifest.ErrDigestMismatch means
// the sender served wrong bytes; it is also recorded as an event on the
// span in the context given to Open.
func (r *ChunkReader) Next(buf []byte) (int, []byte, error) {
	if r.pos >= len(r.want) {
		return 0, nil, io.EOF
	}
	idx := int(r.want[r.pos])
	if idx >= r.m.ChunkCount() {
		return 0, nil, fmt.Errorf("chunk %d of %s: out of range", idx, r.m.Root)
	}
	size := r.m.ChunkLen(idx)
	if cap(buf) < size {
		buf = make([]byte, size)
	}
	buf = buf[:size]
	got := 0
	for got < size {
		// The codec decodes a piece's data straight into the room its
		// message's Data has: here, where the piece belongs in buf, and
		// no further than the chunk's end (a piece too long for it is
		// decoded elsewhere, and refused below).
		msg := &sppv1.FetchResponse{Data: buf[got:got:size]}
		if err := r.recv(msg); err != nil {
			return 0, nil, err
		}
		if int(msg.Chunk) != idx || int(msg.Offset) != got || got+len(msg.Data) > size {
			return 0, nil, fmt.Errorf("%w: got chunk %d offset %d (%d bytes), want chunk %d offset %d", ErrProtocol, msg.Chunk, msg.Offset, len(msg.Data), idx, got)
		}
		r.recvd.Add(int64(len(msg.Data)))
		if len(msg.Data) > 0 && &msg.Data[0] != &buf[got] {
			copy(buf[got:], msg.Data) // decoded elsewhere (another codec)
		}
		got += len(msg.Data)
	}
	if err := r.m.Verify(idx, buf); err != nil {
		telemetry.DigestFailure(r.ctx, r.m.Root.String(), idx)
		return 0, nil, fmt.Errorf("chunk %d of %s: %w", idx, r.m.Root, err)
	}
	r.pos++
	return idx, buf, nil
}

func (r *ChunkReader) recv(msg *sppv1.FetchResponse) error {
	if r.stall != nil {
		r.stall.wait()
	}
	if err := r.stream.RecvMsg(msg); err != nil {
		if r.stall != nil && r.stall.stalled() {
			return fmt.Errorf("%w after %v", ErrStalled, r.timeout)
		}
		if err == io.EOF {
			return fmt.Errorf("%w: stream ended before chunk %d", ErrProtocol, r.want[r.pos])
		}
		return err
	}
	if r.stall != nil {
		// Until the next recv, the reader is not waiting: a consumer
		// that reads slowly holds the sender back by flow control, which
		// is no stall of the sender's.
		r.stall.progress()
	}
	return nil
}
