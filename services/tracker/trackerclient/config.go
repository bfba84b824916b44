package trackerclient

import (
	"log/slog"
	"time"
)

// Config tunes a Member. The zero value is usable; see applyDefaults.
type Config struct {
	// FlushDelay is how long queued holdings wait to be sent, so a burst
	// of stored chunks becomes one Announce.
	FlushDelay time.Duration
	// MinBackoff and MaxBackoff bound the wait between retries while the
	// trackers are unreachable.
	MinBackoff, MaxBackoff time.Duration
	// CallTimeout bounds each tracker call.
	CallTimeout time.Duration
	// MaxHavesPerAnnounce and MaxAnnounceBytes split large announcements
	// into several calls; they match the tracker's limits.
	MaxHavesPerAnnounce int
	MaxAnnounceBytes    int
	// Logger receives the member's logs.
	Logger *slog.Logger
}

// applyDefaults fills unset fields:
//   - FlushDelay 250ms: holdings reach the tracker quickly, while a node
//     filling its cache at line rate still announces only 4 times a second;
//   - MinBackoff 100ms, MaxBackoff 5s: quick to come back after a tracker
//     restart, gentle on a tracker that is down;
//   - CallTimeout 5s (heartbeats use at most a third of the lease TTL);
//   - MaxHavesPerAnnounce 128 and MaxAnnounceBytes 1 MiB: the tracker's
//     defaults (etcd's transaction and request limits);
//   - Logger slog.Default().
func (c *Config) applyDefaults() {
	if c.FlushDelay <= 0 {
		c.FlushDelay = 250 * time.Millisecond
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(5*time.Second, c.MinBackoff)
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = 5 * time.Second
	}
	if c.MaxHavesPerAnnounce <= 0 {
		c.MaxHavesPerAnnounce = 128
	}
	if c.MaxAnnounceBytes <= 0 {
		c.MaxAnnounceBytes = 1 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}
