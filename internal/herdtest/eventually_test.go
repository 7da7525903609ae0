package herdtest

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

func TestPollReturnsOnceTheConditionHolds(t *testing.T) {
	var checks atomic.Int32
	if !Poll(10*time.Second, func() bool { return checks.Add(1) == 3 }) {
		t.Fatal("Poll gave up on a condition that held at the third check")
	}
	if n := checks.Load(); n != 3 {
		t.Fatalf("%d checks, want 3: Poll goes on after the condition held", n)
	}
}

func TestPollGivesUpAtTheLimitAfterALastCheck(t *testing.T) {
	start := time.Now()
	var last time.Time
	if Poll(50*time.Millisecond, func() bool { last = time.Now(); return false }) {
		t.Fatal("Poll reported a condition that never held")
	}
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Fatalf("Poll gave up after %s, before its limit", took)
	}
	if last.Sub(start) < 50*time.Millisecond {
		t.Fatalf("last check %s after the start: none at the deadline", last.Sub(start))
	}
}

func TestPollEveryKeepsItsPace(t *testing.T) {
	var checks []time.Time
	if PollEvery(100*time.Millisecond, 25*time.Millisecond, func() bool { checks = append(checks, time.Now()); return false }) {
		t.Fatal("PollEvery reported a condition that never held")
	}
	// At 25 ms: 0, 25, 50, 75, 100. Poll would have made 10 checks by then (0, 1, 3, 7, 15,
	// 31, 51, 71, 91, 100); a busy machine makes fewer, never more.
	if len(checks) > 5 {
		t.Fatalf("%d checks in 100 ms at a pace of 25 ms", len(checks))
	}
}

// fatalRecorder is a testing.TB whose Fatalf records the message instead of ending the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) { r.msg = fmt.Sprintf(format, args...) }

func TestEventuallySaysWhatItAwaited(t *testing.T) {
	r := &fatalRecorder{TB: t}
	Eventually(r, 5*time.Millisecond, "the moon", func() bool { return false })
	if r.msg != "waited 5ms for the moon" {
		t.Fatalf("failure %q", r.msg)
	}
	r.msg = ""
	Eventually(r, time.Second, "something true", func() bool { return true })
	if r.msg != "" {
		t.Fatalf("failed on a condition that holds: %q", r.msg)
	}
}

func TestEventuallyNilEndsWithTheLastError(t *testing.T) {
	r := &fatalRecorder{TB: t}
	n := 0
	EventuallyNil(r, 5*time.Millisecond, "the moon", func() error { n++; return fmt.Errorf("check %d", n) })
	if want := fmt.Sprintf("waited 5ms for the moon; last: check %d", n); r.msg != want || n < 2 {
		t.Fatalf("failure %q after %d checks, want %q", r.msg, n, want)
	}
	r.msg = ""
	errs := []error{errors.New("not yet"), nil}
	EventuallyNil(r, 10*time.Second, "the second check", func() error { err := errs[0]; errs = errs[1:]; return err })
	if r.msg != "" || len(errs) != 0 {
		t.Fatalf("failure %q with %d checks left", r.msg, len(errs))
	}
}
