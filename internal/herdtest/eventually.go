package herdtest

import (
	"testing"
	"time"
)

// pollMax is the longest pause between two checks of a condition: short enough that a wait
// ends soon after its condition holds, long enough that a condition which costs a request or
// a process (a /stats, a `herd status`) does not load a busy machine.
const pollMax = 20 * time.Millisecond

// Poll checks cond until it holds and reports whether it did before limit passed. It checks
// at once, then after pauses that grow from a millisecond to pollMax, and once more at the
// deadline. Tests wait for a condition through it (or through Eventually, which fails the
// test) instead of sleeping for a time the condition probably takes: a sleep is too short on
// a loaded machine and too long everywhere else.
//
// Poll does not touch a testing.T, so a goroutine other than the test's may call it.
func Poll(limit time.Duration, cond func() bool) bool {
	return poll(limit, time.Millisecond, pollMax, cond)
}

// PollEvery is Poll at a fixed pace, for a wait that is also a measurement: when it returns,
// the condition has held for at most about pause (and the time a check takes).
func PollEvery(limit, pause time.Duration, cond func() bool) bool {
	return poll(limit, pause, pause, cond)
}

// poll is the one polling loop: pauses from first, doubling up to most.
func poll(limit, first, most time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for pause := first; ; pause = min(2*pause, most) {
		if cond() {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		time.Sleep(min(pause, left))
	}
}

// Eventually waits until cond holds, and fails the test when it does not within limit. what
// names the awaited condition for the failure ("every worker gone", "the access log line").
func Eventually(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Poll(limit, cond) {
		t.Fatalf("waited %s for %s", limit, what)
	}
}

// EventuallyNil is Eventually for a check that says why it does not hold yet: it waits until
// check returns nil, and the failure ends with the last error, which may carry what the test
// saw (a screen, a file, a status).
func EventuallyNil(t testing.TB, limit time.Duration, what string, check func() error) {
	t.Helper()
	var last error
	if !Poll(limit, func() bool { last = check(); return last == nil }) {
		t.Fatalf("waited %s for %s; last: %v", limit, what, last)
	}
}
