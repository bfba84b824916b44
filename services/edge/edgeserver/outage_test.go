package edgeserver

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/p2pd/p2pd/internal/testclock"
)

func TestCacheStaleIfError(t *testing.T) {
	clock := testclock.New(time.Unix(1000, 0))
	boom := errors.New("tracker down")
	tests := []struct {
		name    string
		stale   time.Duration
		advance time.Duration // after the first load, before the failing one
		want    string        // "" for the load's error
	}{
		{"disabled", 0, 2 * time.Second, ""},
		{"within the stale window", time.Minute, 30 * time.Second, "v1"},
		{"past the stale window", time.Minute, time.Minute + time.Second, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache[string, string](10, 0, nil, time.Second, time.Minute, clock.Now)
			c.staleIfError = tc.stale
			if v, err := c.get(context.Background(), "k", func(context.Context) (string, error) { return "v1", nil }); v != "v1" || err != nil {
				t.Fatalf("first load: %q, %v", v, err)
			}
			clock.Advance(tc.advance)
			loads := 0
			failing := func(context.Context) (string, error) { loads++; return "", boom }
			v, err := c.get(context.Background(), "k", failing)
			switch {
			case tc.want == "" && !errors.Is(err, boom):
				t.Fatalf("got %q, %v; want the load's error", v, err)
			case tc.want != "" && (err != nil || v != tc.want):
				t.Fatalf("got %q, %v; want stale %q", v, err, tc.want)
			}
			if tc.want != "" {
				// The stale answer is reused for a ttl before the next try.
				c.get(context.Background(), "k", failing)
				if loads != 1 {
					t.Errorf("%d loads within a ttl of a failure, want 1", loads)
				}
				clock.Advance(2 * time.Second)
				if v, err := c.get(context.Background(), "k", func(context.Context) (string, error) { return "v2", nil }); v != "v2" || err != nil {
					t.Errorf("after recovery: %q, %v; want the fresh value", v, err)
				}
			}
		})
	}
}

// TestTrackerOutage: with the tracker gone, the edge serves the files
// (and the windows of them) it looked up recently, byte-exact, and
// answers 503 for anything it must ask the tracker about.
func TestTrackerOutage(t *testing.T) {
	big := newFixtureFile(t, "films/big.mp4", bigSize, 1)
	other := newFixtureFile(t, "other.mp4", 3*testChunk, 9)
	e := newEnv(t, 2, []*fixtureFile{big, other}, nil)
	if resp, body, err := e.do(t, "GET", "/films/big.mp4"); err != nil || resp.StatusCode != 200 || !bytes.Equal(body, big.data) {
		t.Fatalf("before the outage: %v %v", resp.StatusCode, err)
	}
	e.tracker.Stop()
	e.clock.Advance(time.Minute) // every GetFile and Locate answer expired
	for range 3 {
		resp, body, err := e.do(t, "GET", "/films/big.mp4")
		if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, big.data) {
			t.Fatalf("during the outage: status %d, err %v, byte-exact %v", resp.StatusCode, err, bytes.Equal(body, big.data))
		}
	}
	if resp, _, _ := e.do(t, "GET", "/other.mp4"); resp.StatusCode != 503 {
		t.Errorf("a file never looked up: status %d, want 503", resp.StatusCode)
	}
	e.clock.Advance(time.Hour) // past StaleIfError
	if resp, _, _ := e.do(t, "GET", "/films/big.mp4"); resp.StatusCode != 503 {
		t.Errorf("past StaleIfError: status %d, want 503", resp.StatusCode)
	}
}
