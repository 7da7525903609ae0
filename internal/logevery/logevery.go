// Package logevery rate-limits a log line that a flood would repeat for every request or
// connection: the line is written at most once per interval, and says how many times the
// thing happened since the last one. It imports nothing of herd's.
package logevery

import (
	"sync"
	"time"
)

// Every lets one event in per interval through: DefaultInterval for a zero Every, else
// New's. A nil Every lets every event through.
type Every struct {
	interval time.Duration
	// A lock, not atomics: an event let through must take the count of the ones held back
	// before it and no later one, which a swap racing with the increments cannot promise.
	mu     sync.Mutex
	last   int64 // unix nanoseconds of the last event let through
	missed int64 // events held back since
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
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.last != 0 && now-e.last < int64(interval) {
		e.missed++
		return false, 0
	}
	e.last, missed = now, e.missed
	e.missed = 0
	return true, missed
}
