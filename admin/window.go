package admin

import (
	"math/bits"
	"sync"
	"time"
)

// windowSeconds is how much history the dashboard and `herd top` can show.
const windowSeconds = 300

// latencyBuckets is the resolution of the window's percentiles: 4 buckets per power of two
// of microseconds (at most 19% off), up to about 2^27 us (134 s); longer ones share the last.
const latencyBuckets = 8 + 24*4

// window keeps, for each of the last windowSeconds seconds, the request count and a
// latency histogram, so that rates and percentiles over any recent span can be read back.
// Prometheus has the long-term view; this is the live one, which needs no Prometheus.
type window struct {
	mu    sync.Mutex
	slots [windowSeconds]second
}

type second struct {
	unix   int64 // which second the slot holds now; a stale slot is reset on first use
	count  uint32
	errors uint32 // 5xx answers
	hist   [latencyBuckets]uint32
}

// record adds one request that ended at end and took d.
func (w *window) record(end time.Time, d time.Duration, serverError bool) {
	sec := end.Unix()
	b := latencyBucket(d)
	w.mu.Lock()
	s := &w.slots[sec%windowSeconds]
	if s.unix != sec {
		*s = second{unix: sec}
	}
	s.count++
	if serverError {
		s.errors++
	}
	s.hist[b]++
	w.mu.Unlock()
}

// latencyBucket maps a duration to its histogram bucket: exact below 8 us, then four
// buckets per power of two.
func latencyBucket(d time.Duration) int {
	us := uint64(max(d.Microseconds(), 0))
	if us < 8 {
		return int(us)
	}
	e := bits.Len64(us) - 1 // 2^e <= us < 2^(e+1), e >= 3
	b := 8 + (e-3)*4 + int(us>>(e-2)&3)
	return min(b, latencyBuckets-1)
}

// bucketUpper is the largest duration that falls in bucket b.
func bucketUpper(b int) time.Duration {
	if b < 8 {
		return time.Duration(b+1) * time.Microsecond
	}
	e := (b-8)/4 + 3
	m := uint64((b-8)%4) + 5 // the mantissa's next step: (4+m+1) << (e-2)
	return time.Duration(m<<(e-2)) * time.Microsecond
}

// Point is one second of traffic.
type Point struct {
	Unix     int64   `json:"t"`
	Requests uint32  `json:"requests"`
	Errors   uint32  `json:"errors"`
	P50      float64 `json:"p50_ms"`
	P90      float64 `json:"p90_ms"`
	P99      float64 `json:"p99_ms"`
}

// Summary is traffic over a span of seconds.
type Summary struct {
	Seconds   int     `json:"seconds"`
	Requests  uint64  `json:"requests"`
	PerSecond float64 `json:"per_second"`
	P50       float64 `json:"p50_ms"`
	P90       float64 `json:"p90_ms"`
	P99       float64 `json:"p99_ms"`
}

// series returns the n whole seconds before now, oldest first; seconds without traffic
// are zero points.
func (w *window) series(now time.Time, n int) []Point {
	n = min(n, windowSeconds-1)
	last := now.Unix() - 1 // the current second is still filling
	out := make([]Point, 0, n)
	w.mu.Lock()
	defer w.mu.Unlock()
	for sec := last - int64(n) + 1; sec <= last; sec++ {
		p := Point{Unix: sec}
		if s := &w.slots[sec%windowSeconds]; s.unix == sec {
			p.Requests, p.Errors = s.count, s.errors
			p.P50, p.P90, p.P99 = percentileMs(&s.hist, s.count, 0.50), percentileMs(&s.hist, s.count, 0.90), percentileMs(&s.hist, s.count, 0.99)
		}
		out = append(out, p)
	}
	return out
}

// summary merges the n whole seconds before now.
func (w *window) summary(now time.Time, n int) Summary {
	n = min(n, windowSeconds-1)
	last := now.Unix() - 1
	var hist [latencyBuckets]uint32
	var count uint32
	w.mu.Lock()
	for sec := last - int64(n) + 1; sec <= last; sec++ {
		s := &w.slots[sec%windowSeconds]
		if s.unix != sec {
			continue
		}
		count += s.count
		for i, c := range s.hist {
			hist[i] += c
		}
	}
	w.mu.Unlock()
	return Summary{
		Seconds: n, Requests: uint64(count), PerSecond: float64(count) / float64(n),
		P50: percentileMs(&hist, count, 0.50), P90: percentileMs(&hist, count, 0.90), P99: percentileMs(&hist, count, 0.99),
	}
}

// percentileMs is the upper bound of the bucket holding quantile q, in milliseconds.
func percentileMs(hist *[latencyBuckets]uint32, count uint32, q float64) float64 {
	if count == 0 {
		return 0
	}
	rank := uint32(q*float64(count) + 0.999999) // the ceil'th request, 1-based
	var seen uint32
	for b, c := range hist {
		seen += c
		if seen >= rank {
			return float64(bucketUpper(b)) / float64(time.Millisecond)
		}
	}
	return float64(bucketUpper(latencyBuckets-1)) / float64(time.Millisecond)
}
