package edgeserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"time"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	"github.com/p2pd/p2pd/internal/rangeio"
	"github.com/p2pd/p2pd/internal/source"
	"github.com/p2pd/p2pd/internal/spp"
	"github.com/p2pd/p2pd/internal/telemetry"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fileSource is the rangeio.ChunkSource of one file version: it streams
// chunks from the nodes the tracker ranks best.
type fileSource struct {
	s *Server
	m *manifest.Manifest
}

// Stream implements rangeio.ChunkSource. Nothing is asked of the network
// until the first Next.
func (f fileSource) Stream(ctx context.Context, first, last int) (rangeio.ChunkStream, error) {
	return f.s.open(ctx, f.m, first, last), nil
}

// failoverStream delivers chunks next..last in order. It cuts them into
// runs of consecutive chunks whose best source is the same node (the
// tracker ranks each chunk's "home" first, so edges converge on one copy)
// and streams each run with one SPP Fetch. When a node fails, stalls or
// sends bytes that do not verify, it is excluded for the rest of the
// stream, put on probation, and the stream resumes at the first chunk not
// yet delivered from the next-ranked node. Only verified chunks come out.
type failoverStream struct {
	s    *Server
	m    *manifest.Manifest
	ctx  context.Context
	next int
	last int

	rd        *spp.ChunkReader // current run, nil between runs
	node      source.Source
	runStart  time.Time
	runBytes  int64
	runChunks int
	span      telemetry.Fetch // the current run's span
	excluded  map[string]bool
	errs      []error
	// sick is set when a source failed for another reason than declining
	// the chunk (NOT_FOUND).
	sick bool
	// liars sent bytes that did not verify: never asked again.
	liars map[string]bool
	// retried is set once every source was given a second chance.
	retried bool
}

// Next implements rangeio.ChunkStream.
func (f *failoverStream) Next(buf []byte) (int, []byte, error) {
	for f.next <= f.last {
		if err := f.ctx.Err(); err != nil {
			f.Close()
			return 0, nil, err
		}
		if f.rd == nil {
			if err := f.open(); err != nil {
				return 0, nil, err
			}
		}
		idx, data, err := f.rd.Next(buf)
		switch {
		case err == nil:
			f.next = idx + 1
			f.runBytes += int64(len(data))
			f.runChunks++
			return idx, data, nil
		case err == io.EOF:
			f.endRun(nil)
		case f.ctx.Err() != nil:
			f.Close()
			return 0, nil, f.ctx.Err()
		default:
			f.endRun(err)
		}
	}
	return 0, nil, io.EOF
}

// Close implements rangeio.ChunkStream.
func (f *failoverStream) Close() {
	if f.rd != nil {
		f.rd.Close()
		f.rd = nil
		// A run cut short by the reader (a Seek, the viewer leaving) is
		// neither a failure nor a fair rate sample.
	}
	f.endSpan(nil)
}

// endSpan ends the current run's span, if any.
func (f *failoverStream) endSpan(err error) {
	f.span.End(f.runChunks, f.runBytes, err)
	f.span = telemetry.Fetch{}
}

// open starts a run at f.next from the best source not yet excluded.
func (f *failoverStream) open() error {
	for {
		cands, err := f.s.sources(f.ctx, f.m, f.next)
		if err != nil {
			return fmt.Errorf("chunk %d: %w", f.next, err)
		}
		cands = f.s.order(cands, f.excluded)
		if len(cands) == 0 && f.sick && !f.retried {
			// Every source failed once. A peer may have stalled only
			// because it was itself fetching from the node that died;
			// one more round (failed nodes now on probation, ranked last)
			// rescues the viewer's response before it must be cut.
			f.retried = true
			f.excluded = maps.Clone(f.liars)
			continue
		}
		if len(cands) == 0 {
			if len(f.errs) > 0 && !f.sick {
				return fmt.Errorf("chunk %d: %w: %w", f.next, errNotHeld, errors.Join(f.errs...))
			}
			if len(f.errs) > 0 {
				return fmt.Errorf("chunk %d: %w: %w", f.next, errUpstream, errors.Join(f.errs...))
			}
			return fmt.Errorf("chunk %d: %w", f.next, errNoSource)
		}
		n := cands[0]
		chunks := []uint32{uint32(f.next)}
		for j := f.next + 1; j <= f.last && len(chunks) < spp.MaxChunksPerFetch; j++ {
			c, err := f.s.sources(f.ctx, f.m, j)
			if err != nil {
				break // the run stops here; the next one will say why
			}
			if c = f.s.order(c, f.excluded); len(c) == 0 || c[0] != n {
				break
			}
			chunks = append(chunks, uint32(j))
		}
		f.node, f.runStart, f.runBytes, f.runChunks = n, f.s.cfg.Now(), 0, 0
		var ctx context.Context
		ctx, f.span = telemetry.StartFetch(f.ctx, n.ID, "", f.next, len(chunks))
		client, err := f.s.nodes.Client(n.Addr)
		if err == nil {
			// A node busy with other streams (it delivers on them) is
			// not stalled while this one waits in its queue; a silent
			// one is, StallTimeout after its last piece, or
			// AnswerTimeout after the open when it answers nothing.
			f.rd, err = spp.OpenStall(ctx, client, f.m, &sppv1.FetchRequest{
				Root:      f.m.Root[:],
				Chunks:    chunks,
				Requester: f.s.cfg.NodeID,
			}, spp.Stall{Timeout: f.s.cfg.StallTimeout, Peer: f.s.peers.Get(n.Addr), Answer: f.s.cfg.AnswerTimeout})
		}
		if err == nil {
			return nil
		}
		if f.ctx.Err() != nil {
			f.endSpan(f.ctx.Err())
			return f.ctx.Err()
		}
		f.endRun(err)
	}
}

// endRun closes the current run; a non-nil err fails over from its node.
func (f *failoverStream) endRun(err error) {
	if f.rd != nil {
		f.rd.Close()
		f.rd = nil
	}
	n, elapsed := f.node, f.s.cfg.Now().Sub(f.runStart)
	f.endSpan(err)
	if err == nil {
		f.s.health.Success(n.ID)
		f.s.reporter.Add(n.ID, f.runBytes, elapsed, false)
		return
	}
	if f.excluded == nil {
		f.excluded = map[string]bool{}
	}
	f.excluded[n.ID] = true
	f.errs = append(f.errs, fmt.Errorf("%s: %w", n.ID, err))
	f.s.metrics.failovers.Inc()
	// NOT_FOUND is a node declining a chunk it may not fetch, not a sick
	// node: try the next one without holding it against this one.
	if errors.Is(err, manifest.ErrDigestMismatch) {
		if f.liars == nil {
			f.liars = map[string]bool{}
		}
		f.liars[n.ID] = true
	}
	if status.Code(err) != codes.NotFound {
		f.sick = true
		f.s.health.Failure(n.ID)
		f.s.reporter.Add(n.ID, f.runBytes, elapsed, true)
	}
	f.s.cfg.Logger.Warn("chunk source failed, failing over",
		"node", n.ID, "addr", n.Addr, "root", f.m.Root.String(), "chunk", f.next, "err", err)
}
