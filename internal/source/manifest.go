package source

import (
	"context"
	"errors"
	"fmt"
	"time"

	sppv1 "github.com/p2pd/p2pd/gen/spp/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Defaults of ManifestOptions.
const (
	// DefaultBudget bounds a whole manifest fetch, every source included:
	// under the 2 s an edge or cachenode gives a silent stream, times the
	// two or three sources a file usually has.
	DefaultBudget = 5 * time.Second
	// DefaultHedge is how long one source may keep silent before the next
	// is asked as well. A manifest is a few kilobytes that a healthy node
	// answers in milliseconds, so a source this slow is likely stopped or
	// cut off; asking the next costs one more small call.
	DefaultHedge = 500 * time.Millisecond
)

// ErrNoSources is a manifest fetch given no source to ask.
var ErrNoSources = errors.New("no source to ask")

// ErrSilent is what Failed hears of a source that the fetch hedged past
// (it sent nothing for a whole Hedge) and that still had not answered when
// another source did.
var ErrSilent = errors.New("silent: no answer within the hedge, while another source answered")

// Dialer returns an SPP client of a node (spp.Pool is one).
type Dialer interface {
	Client(addr string) (sppv1.ChunkServiceClient, error)
}

// ManifestOptions tune FetchManifest; the zero value is the defaults.
type ManifestOptions struct {
	Budget time.Duration // the whole fetch; DefaultBudget if 0
	Hedge  time.Duration // silence before the next source is asked too; DefaultHedge if 0
	// Failed, if set, hears each source that failed with an error that
	// speaks against it (not NOT_FOUND: a node may rightly not know a
	// file; not a cancellation of ours), so the caller can rank it down.
	// A source the fetch hedged past and that was still silent when
	// another answered is reported too, with ErrSilent: a stopped node
	// then costs the caller's next fetches (its chunks) nothing.
	Failed func(Source, error)
}

// FetchManifest returns the manifest of root from the first of srcs that
// sends one that validates and has that root. Sources are asked in their
// order, origins after every other node (the origin is the last resort,
// not a peer to load); a source that fails is followed at once by the
// next, and one that stays silent for opts.Hedge is raced by the next, so
// a stopped node costs one hedge, not the budget. The whole fetch ends
// with opts.Budget or ctx.
func FetchManifest(ctx context.Context, d Dialer, root manifest.Digest, srcs []Source, opts ManifestOptions) (*manifest.Manifest, error) {
	if opts.Budget <= 0 {
		opts.Budget = DefaultBudget
	}
	if opts.Hedge <= 0 {
		opts.Hedge = DefaultHedge
	}
	srcs = originsLast(srcs)
	if len(srcs) == 0 {
		return nil, fmt.Errorf("manifest %s: %w", root, ErrNoSources)
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Budget)
	defer cancel() // the losers of a race stop here
	deadline, _ := ctx.Deadline()
	// over: the fetch's time is up. A call's own deadline may fire a hair
	// before ctx's, so the clock is asked too.
	over := func() bool { return ctx.Err() != nil || !time.Now().Before(deadline) }

	type result struct {
		i   int
		src Source
		m   *manifest.Manifest
		err error
	}
	results := make(chan result, len(srcs)) // never blocks a loser
	hedge := time.NewTimer(opts.Hedge)
	defer hedge.Stop()
	next, pending := 0, 0
	// silent: the sources hedged past, by index, until they answer.
	silent := map[int]bool{}
	answered := make([]bool, len(srcs))
	ask := func() {
		i, src := next, srcs[next]
		next++
		pending++
		go func() {
			m, err := fetchFrom(ctx, d, src, root)
			results <- result{i, src, m, err}
		}()
		hedge.Reset(opts.Hedge)
	}
	ask()
	var errs []error
	for pending > 0 {
		select {
		case r := <-results:
			pending--
			answered[r.i] = true
			if r.err == nil {
				if opts.Failed != nil {
					for i := range silent {
						if !answered[i] {
							opts.Failed(srcs[i], ErrSilent)
						}
					}
				}
				return r.m, nil
			}
			if over() {
				break // the budget ended: not the source's fault
			}
			errs = append(errs, fmt.Errorf("%s: %w", r.src.ID, r.err))
			if opts.Failed != nil && status.Code(r.err) != codes.NotFound {
				opts.Failed(r.src, r.err)
			}
			if next < len(srcs) {
				ask()
			}
		case <-hedge.C:
			if next < len(srcs) {
				// Every source asked so far and not answered has been
				// silent for at least a hedge.
				for i := range next {
					if !answered[i] {
						silent[i] = true
					}
				}
				ask()
			}
		case <-ctx.Done():
			pending = 0
		}
	}
	if over() {
		err := ctx.Err()
		if err == nil {
			err = context.DeadlineExceeded
		}
		errs = append(errs, fmt.Errorf("%d of %d sources asked within %v: %w", next, len(srcs), opts.Budget, err))
	}
	return nil, fmt.Errorf("manifest %s: %w", root, errors.Join(errs...))
}

// fetchFrom asks one source for the manifest of root and validates it.
func fetchFrom(ctx context.Context, d Dialer, src Source, root manifest.Digest) (*manifest.Manifest, error) {
	c, err := d.Client(src.Addr)
	if err != nil {
		return nil, err
	}
	resp, err := c.GetManifest(ctx, &sppv1.GetManifestRequest{File: &sppv1.GetManifestRequest_Root{Root: root[:]}})
	if err != nil {
		return nil, err
	}
	m, err := manifest.FromProto(resp.GetManifest())
	if err != nil {
		return nil, err
	}
	if m.Root != root {
		// Valid in itself but not what we asked for: never trust it.
		return nil, fmt.Errorf("sent the manifest of %s, asked for %s", m.Root, root)
	}
	return m, nil
}

// originsLast returns srcs with origins moved after every other node,
// each part in its order.
func originsLast(srcs []Source) []Source {
	out := make([]Source, 0, len(srcs))
	var origins []Source
	for _, s := range srcs {
		if s.Origin() {
			origins = append(origins, s)
		} else {
			out = append(out, s)
		}
	}
	return append(out, origins...)
}
