package trackerclient

import (
	"testing"
	"time"
)

func TestReporterMergesPerSource(t *testing.T) {
	r := NewReporter()
	r.Add("a", 100, time.Second, false)
	r.Add("a", 300, time.Second, false)
	r.Add("a", 1, time.Millisecond, true)
	r.Add("b", 0, time.Second, false) // nothing moved: no sample
	r.Add("b", 10, time.Millisecond, true)
	r.Add("b", 0, time.Millisecond, true) // a failure before any byte still counts
	r.Add("", 5, time.Second, false)      // no source: no sample
	type sample struct {
		source string
		failed bool
		bytes  uint64
		d      time.Duration
	}
	var got []sample
	for _, s := range r.Take() {
		got = append(got, sample{s.Source, s.Failed, s.Bytes, time.Duration(s.DurationNanos)})
	}
	want := map[sample]bool{
		{"a", true, 1, time.Millisecond}:      true,
		{"b", true, 10, 2 * time.Millisecond}: true,
		{"a", false, 400, 2 * time.Second}:    true,
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i, s := range got {
		if !want[s] {
			t.Errorf("unexpected sample %+v", s)
		}
		// Failures come first: a source that also delivered is not held back.
		if i > 0 && s.failed && !got[i-1].failed {
			t.Errorf("failure %+v after a success", s)
		}
	}
	if again := r.Take(); len(again) != 0 {
		t.Errorf("take after take: %v", again)
	}
}
