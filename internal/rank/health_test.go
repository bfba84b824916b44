package rank

import (
	"slices"
	"testing"
	"time"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestHealth(t *testing.T) {
	const base, max = time.Second, 8 * time.Second
	type step struct {
		op        string // "fail", "ok" or "wait"
		wait      time.Duration
		probation bool          // expected after the step
		left      time.Duration // expected probation left, when probation
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"healthy at start", []step{{op: "wait", probation: false}}},
		{"one failure", []step{
			{op: "fail", probation: true, left: base},
			{op: "wait", wait: base - time.Millisecond, probation: true, left: time.Millisecond},
			{op: "wait", wait: time.Millisecond, probation: false},
		}},
		{"backoff doubles and caps", []step{
			{op: "fail", probation: true, left: base},
			{op: "fail", probation: true, left: 2 * base},
			{op: "fail", probation: true, left: 4 * base},
			{op: "fail", probation: true, left: 8 * base},
			{op: "fail", probation: true, left: max},
		}},
		{"streak survives a short pause", []step{
			{op: "fail", probation: true, left: base},
			{op: "wait", wait: 2 * base, probation: false},
			{op: "fail", probation: true, left: 2 * base},
		}},
		{"success ends probation and streak", []step{
			{op: "fail"}, {op: "fail", probation: true, left: 2 * base},
			{op: "ok", probation: false},
			{op: "fail", probation: true, left: base},
		}},
		{"long quiet resets streak", []step{
			{op: "fail"}, {op: "fail"}, {op: "fail", probation: true, left: 4 * base},
			{op: "wait", wait: 4*base + max + time.Second, probation: false},
			{op: "fail", probation: true, left: base},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeClock{t: time.Unix(1000, 0)}
			h := NewHealth(HealthConfig{Base: base, Max: max}, clk.now)
			for i, s := range tt.steps {
				switch s.op {
				case "fail":
					h.Failure()
				case "ok":
					h.Success()
				case "wait":
					clk.advance(s.wait)
				}
				if s.op == "fail" && !s.probation && s.left == 0 {
					continue // setup step, not checked
				}
				if got := h.Probation(); got != s.probation {
					t.Fatalf("step %d (%s): Probation = %v, want %v", i, s.op, got, s.probation)
				}
				if s.probation {
					if left := h.Until().Sub(clk.t); left != s.left {
						t.Fatalf("step %d (%s): probation left %v, want %v", i, s.op, left, s.left)
					}
				}
			}
		})
	}
}

func TestHealthDefaults(t *testing.T) {
	clk := &fakeClock{t: time.Unix(0, 0)}
	h := NewHealth(HealthConfig{}, clk.now)
	h.Failure()
	if got := h.Until().Sub(clk.t); got != 2*time.Second {
		t.Errorf("default first probation = %v, want 2s", got)
	}
}

func TestHealths(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	hs := NewHealths(HealthConfig{Base: time.Second, Max: 4 * time.Second}, clock.now)
	for _, step := range []struct {
		op   string // "fail a", "ok a", "wait"
		wait time.Duration
		a, b bool // on probation after the step
	}{
		{op: "fail a", a: true},
		{op: "fail b", a: true, b: true},
		{op: "fail a", a: true, b: true}, // a's streak: 2 s
		{op: "wait", wait: time.Second, a: true},
		{op: "ok a", a: false},
		{op: "fail a", a: true}, // a fresh streak after the success: 1 s
		{op: "wait", wait: time.Second},
	} {
		switch step.op {
		case "fail a":
			hs.Failure("a")
		case "fail b":
			hs.Failure("b")
		case "ok a":
			hs.Success("a")
		case "wait":
			clock.advance(step.wait)
		}
		if hs.Probation("a") != step.a || hs.Probation("b") != step.b {
			t.Fatalf("after %s %v: probation a %v b %v, want %v %v", step.op, step.wait, hs.Probation("a"), hs.Probation("b"), step.a, step.b)
		}
		// The batch form agrees, in the order asked, for known and
		// unknown ids alike.
		var want []string
		for id, on := range map[string]bool{"a": step.a, "b": step.b} {
			if on {
				want = append(want, id)
			}
		}
		slices.Sort(want)
		if got := hs.OnProbation([]string{"a", "c", "b"}); !slices.Equal(got, want) {
			t.Fatalf("after %s %v: OnProbation %v, want %v", step.op, step.wait, got, want)
		}
	}
}
