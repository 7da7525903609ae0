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

// TestDeathsInARow: only the deaths of workers that never served make the row grow; a
// worker that answered a request, or lived past stableAfter, starts a new row (restart at
// once), however young it was.
func TestDeathsInARow(t *testing.T) {
	for _, c := range []struct {
		name     string
		row      int
		readyFor time.Duration
		served   bool
		want     int
	}{
		{"first death at boot", 0, 0, false, 1},
		{"boot failure after boot failure", 3, 0, false, 4},
		{"died on its first request, never served", 2, time.Second, false, 3},
		{"young but served: killed from outside", 4, 300 * time.Millisecond, true, 1},
		{"served once before the app ended its process", 6, 0, true, 1},
		{"stable, nothing served (an idle worker)", 5, stableAfter, false, 1},
	} {
		if got := deathsInARow(c.row, c.readyFor, c.served); got != c.want {
			t.Errorf("%s: deathsInARow(%d, %s, %v) = %d, want %d", c.name, c.row, c.readyFor, c.served, got, c.want)
		}
	}
}
