// Package logevery rate-limits a log line that a flood would repeat for every request or
// connection: the line is written at most once per interval, and says how many times the
// thing happened since the last one. It imports nothing of herd's.
package logevery

import (
	"sync/atomic"
	"time"
)

// Every lets one event in per interval through: DefaultInterval for a zero Every, else
// New's. A nil Every lets every event through.
type Every struct {
	interval time.Duration
	last     atomic.Int64 // unix nanoseconds of the last event let through
	missed   atomic.Int64 // events held back since
}

// DefaultInterval is a zero Every's.
const DefaultInterval = 10 * time.Second

// New returns an Every of interval.
func New(interval time.Duration) *Every { return &Every{interval: interval} }

// Allow reports whether this event is to be logged, and how many earlier ones were held
// back since the last logged one (this one not counted).
func (e *Every) Allow() (ok bool, missed int64) {
	if e == nil {
		return true, 0
	}
	interval := e.interval
	if interval == 0 {
		interval = DefaultInterval
	}
	now := time.Now().UnixNano()
	prev := e.last.Load()
	if prev != 0 && now-prev < int64(interval) || !e.last.CompareAndSwap(prev, now) {
		e.missed.Add(1)
		return false, 0
	}
	return true, e.missed.Swap(0)
}
