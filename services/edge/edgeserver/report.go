package edgeserver

import (
	"context"
	"log/slog"
	"sync"
	"time"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
)

// maxPendingSamples bounds the samples kept while the tracker is slow or
// unreachable; the rest are dropped: ranking hints, not accounting.
const maxPendingSamples = 1024

// reporter batches rate samples and sends them to the tracker every
// interval, so a thousand viewers cost one ReportRate a second, not one
// per run. Successful runs are summed per source; failures are sent one
// by one since each counts against the source's health.
type reporter struct {
	mu     sync.Mutex
	ok     map[string]*trackerv1.RateSample
	failed []*trackerv1.RateSample
}

func newReporter() *reporter {
	return &reporter{ok: map[string]*trackerv1.RateSample{}}
}

func (r *reporter) add(source string, bytes int64, d time.Duration, failed bool) {
	if source == "" || (!failed && bytes <= 0) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if failed {
		if len(r.failed) >= maxPendingSamples {
			return
		}
		r.failed = append(r.failed, &trackerv1.RateSample{Source: source, Bytes: uint64(max(bytes, 0)), DurationNanos: int64(d), Failed: true})
		return
	}
	s, ok := r.ok[source]
	if !ok {
		if len(r.ok) >= maxPendingSamples {
			return
		}
		s = &trackerv1.RateSample{Source: source}
		r.ok[source] = s
	}
	s.Bytes += uint64(bytes)
	s.DurationNanos += int64(d)
}

// take returns and clears the pending samples.
func (r *reporter) take() []*trackerv1.RateSample {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.failed
	r.failed = nil
	for k, s := range r.ok {
		out = append(out, s)
		delete(r.ok, k)
	}
	return out
}

// run flushes every interval until ctx ends.
func (r *reporter) run(ctx context.Context, t Tracker, reporterID string, interval, timeout time.Duration, log *slog.Logger) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		samples := r.take()
		if len(samples) == 0 {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, timeout)
		_, err := t.ReportRate(rctx, &trackerv1.ReportRateRequest{Reporter: reporterID, Samples: samples})
		cancel()
		if err != nil && ctx.Err() == nil {
			log.Debug("report rates", "samples", len(samples), "err", err)
		}
	}
}
