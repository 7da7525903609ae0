package supervisor

import (
	"testing"
	"time"
)

// TestRestartDelayGrowsToCap: the first death is replaced at once, then the wait doubles,
// and it never passes the cap however long the row (no overflow into a negative wait).
func TestRestartDelayGrowsToCap(t *testing.T) {
	want := []time.Duration{0, 0, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond,
		800 * time.Millisecond, 1600 * time.Millisecond, 3200 * time.Millisecond, 6400 * time.Millisecond, backoffCap, backoffCap}
	for deaths, w := range want {
		if got := restartDelay(deaths); got != w {
			t.Errorf("restartDelay(%d) = %s, want %s", deaths, got, w)
		}
	}
	for _, deaths := range []int{40, 63, 64, 65, 1000} {
		if got := restartDelay(deaths); got != backoffCap {
			t.Errorf("restartDelay(%d) = %s, want the cap %s", deaths, got, backoffCap)
		}
	}
}
