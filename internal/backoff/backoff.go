// Package backoff says how long to wait before restarting something that keeps failing: the
// first failure in a row is retried at once, each further one waits twice as long as the one
// before, from Step up to Cap. It imports nothing of herd's.
package backoff

import "time"

// Policy is a doubling backoff.
type Policy struct {
	Step time.Duration // the wait after the second failure in a row
	Cap  time.Duration // the longest wait
}

// Delay is the wait after the row-th failure in a row (row 1 is the first).
func (p Policy) Delay(row int) time.Duration {
	if row <= 1 {
		return 0
	}
	d := p.Step << (row - 2)
	if d > p.Cap || d <= 0 {
		return p.Cap
	}
	return d
}
