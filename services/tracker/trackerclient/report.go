package trackerclient

import (
	"context"
	"log/slog"
	"sync"
	"time"

	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"google.golang.org/grpc"
)

// maxReportSources bounds the sources a Reporter keeps samples of while
// the tracker is slow or unreachable; the rest are dropped: ranking
// hints, not accounting.
const maxReportSources = 1024

// RateReporter is the tracker call a Reporter makes (a *Client, or the
// generated client).
type RateReporter interface {
	ReportRate(ctx context.Context, in *trackerv1.ReportRateRequest, opts ...grpc.CallOption) (*trackerv1.ReportRateResponse, error)
}

// Reporter batches the transfers a node measured and sends them to the
// tracker now and then, so a thousand streams cost one ReportRate per
// interval, not one per transfer. The rule for samples, the same for
// every reporter: per source, the successes of an interval are summed
// into one sample, and its failures are one failed sample — ten streams
// cut by one outage are one failure of the source, not a streak of ten
// (the tracker backs a node off longer for each failure in a row, see
// rank.Health). A source's failed sample is sent before its successful
// one, so a source that also delivered since is not held back.
type Reporter struct {
	mu     sync.Mutex
	ok     map[string]*trackerv1.RateSample
	failed map[string]*trackerv1.RateSample
}

// NewReporter returns an empty Reporter.
func NewReporter() *Reporter {
	return &Reporter{ok: map[string]*trackerv1.RateSample{}, failed: map[string]*trackerv1.RateSample{}}
}

// Add records a transfer of bytes from source that took d; failed marks
// one that ended in an error or a stall. A success that moved nothing
// says nothing and is dropped.
func (r *Reporter) Add(source string, bytes int64, d time.Duration, failed bool) {
	if source == "" || (!failed && bytes <= 0) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.ok
	if failed {
		m = r.failed
	}
	s := m[source]
	if s == nil {
		if len(m) >= maxReportSources {
			return
		}
		s = &trackerv1.RateSample{Source: source, Failed: failed}
		m[source] = s
	}
	s.Bytes += uint64(max(bytes, 0))
	s.DurationNanos += int64(d)
}

// Take returns and clears the pending samples, failures first.
func (r *Reporter) Take() []*trackerv1.RateSample {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*trackerv1.RateSample, 0, len(r.failed)+len(r.ok))
	for _, m := range []map[string]*trackerv1.RateSample{r.failed, r.ok} {
		for k, s := range m {
			out = append(out, s)
			delete(m, k)
		}
	}
	return out
}

// Flush sends the pending samples as reporter (the node's id), bounded by
// timeout. Samples a failed call carried are dropped.
func (r *Reporter) Flush(ctx context.Context, t RateReporter, reporter string, timeout time.Duration) error {
	samples := r.Take()
	if len(samples) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := t.ReportRate(ctx, &trackerv1.ReportRateRequest{Reporter: reporter, Samples: samples})
	return err
}

// Run flushes every interval until ctx ends.
func (r *Reporter) Run(ctx context.Context, t RateReporter, reporter string, interval, timeout time.Duration, log *slog.Logger) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := r.Flush(ctx, t, reporter, timeout); err != nil && ctx.Err() == nil {
				log.Debug("report rates", "err", err)
			}
		}
	}
}
