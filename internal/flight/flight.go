// Package flight coalesces concurrent loads of one thing: while a load
// for a key runs, every other caller for that key waits for its result
// instead of loading again, so a thousand viewers starting one file cost
// one manifest fetch. It is golang.org/x/sync/singleflight with types and
// contexts.
package flight

import (
	"context"

	"golang.org/x/sync/singleflight"
)

// Group runs at most one load per key at a time. The zero value is ready.
type Group[V any] struct {
	g singleflight.Group
}

// Do returns the result of fn for key, run now or shared with a call of
// key already in flight. fn runs apart from the caller: a caller whose ctx
// ends stops waiting with ctx's error while the call goes on for the
// others, so fn must bound itself (a load detached from its first caller
// uses context.WithoutCancel and a timeout). Results are not kept: once a
// call ends, the next Do of key calls again.
func (g *Group[V]) Do(ctx context.Context, key string, fn func() (V, error)) (V, error) {
	ch := g.g.DoChan(key, func() (any, error) { return fn() })
	select {
	case r := <-ch:
		v, _ := r.Val.(V)
		return v, r.Err
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}
