package admin

import (
	"testing"
	"time"
)

func TestLatencyBucketBounds(t *testing.T) {
	prev := time.Duration(0)
	for b := 0; b < latencyBuckets; b++ {
		up := bucketUpper(b)
		if up <= prev {
			t.Fatalf("bucket %d upper %s not above previous %s", b, up, prev)
		}
		prev = up
	}
	for _, d := range []time.Duration{0, time.Microsecond, 7 * time.Microsecond, 8 * time.Microsecond, 9 * time.Microsecond,
		100 * time.Microsecond, 999 * time.Microsecond, 3 * time.Millisecond, 250 * time.Millisecond, 2 * time.Second, 100 * time.Second} {
		b := latencyBucket(d)
		if d.Truncate(time.Microsecond) > bucketUpper(b) {
			t.Errorf("%s in bucket %d whose upper bound is %s", d, b, bucketUpper(b))
		}
		if b > 0 && d.Truncate(time.Microsecond) < bucketUpper(b-1) {
			t.Errorf("%s in bucket %d but fits bucket %d (upper %s)", d, b, b-1, bucketUpper(b-1))
		}
		if up := bucketUpper(b); d > 8*time.Microsecond && float64(up) > 1.26*float64(d) {
			t.Errorf("%s: bucket upper bound %s more than 26%% off", d, up)
		}
	}
}

func TestWindowRatesAndPercentiles(t *testing.T) {
	var w window
	base := time.Unix(1_000_000, 0)
	// Second 0: 98 fast requests and 2 slow ones; second 1: 10 requests.
	for i := range 98 {
		w.record(base.Add(time.Duration(i)*time.Millisecond), time.Millisecond, false)
	}
	w.record(base.Add(500*time.Millisecond), 200*time.Millisecond, true)
	w.record(base.Add(600*time.Millisecond), 200*time.Millisecond, false)
	for range 10 {
		w.record(base.Add(1500*time.Millisecond), 2*time.Millisecond, false)
	}
	now := base.Add(2500 * time.Millisecond) // second 2 is still filling
	pts := w.series(now, 3)
	if len(pts) != 3 || pts[0].Requests != 0 || pts[1].Requests != 100 || pts[2].Requests != 10 {
		t.Fatalf("series = %+v", pts)
	}
	if pts[1].Errors != 1 || pts[1].P50 < 1 || pts[1].P50 > 1.26 || pts[1].P99 < 200 || pts[1].P99 > 252 {
		t.Fatalf("second 0: %+v", pts[1])
	}
	s := w.summary(now, 2)
	if s.Requests != 110 || s.PerSecond != 55 {
		t.Fatalf("summary = %+v", s)
	}
	// A slot from windowSeconds ago is not counted again.
	later := base.Add(windowSeconds * time.Second)
	w.record(later, time.Millisecond, false)
	if got := w.series(later.Add(time.Second), 1)[0].Requests; got != 1 {
		t.Fatalf("reused slot holds %d requests, want 1", got)
	}
}
