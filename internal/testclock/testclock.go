// Package testclock is the hand-moved clock of the project's tests: code
// under test takes a func() time.Time, and the test passes Clock.Now and
// moves time with Advance, so expiry, backoff and stall rules are tested
// without sleeping and without timed assertions.
package testclock

import (
	"sync"
	"time"
)

// Clock is a time that moves only when the test moves it. Safe for
// concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// New returns a clock standing at t.
func New(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
