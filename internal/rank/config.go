package rank

import "time"

// DefaultAlpha is the EWMA weight of a new rate sample. At 0.3 a node's rate
// follows a real change within a handful of transfers yet one unlucky
// transfer moves it by less than a rate bucket (a factor of two).
const DefaultAlpha = 0.3

// HealthConfig tunes probation after failures.
type HealthConfig struct {
	// Base is the first probation after a failure.
	Base time.Duration
	// Max caps the probation as consecutive failures double it.
	Max time.Duration
}

// applyDefaults fills unset fields:
//   - Base 2s: long enough that the next request of a stream picks another
//     node, short enough that a node that hiccuped once is back at once;
//   - Max 1m: a node that keeps failing is still retried now and then, and
//     a dead node's lease expires long before this anyway.
func (c *HealthConfig) applyDefaults() {
	if c.Base <= 0 {
		c.Base = 2 * time.Second
	}
	if c.Max <= 0 {
		c.Max = time.Minute
	}
	if c.Max < c.Base {
		c.Max = c.Base
	}
}
