package supervisor

import (
	"slices"
	"testing"
)

func TestPickLeastLoadedThenRoundRobin(t *testing.T) {
	ready := func(inflight, free int) *Worker {
		return &Worker{state: Ready, inflight: inflight, free: make([]*slot, free)}
	}
	leaving := ready(0, 1)
	leaving.leaving = true
	unreachable := ready(0, 1)
	unreachable.unreachable = true
	starting := &Worker{state: Starting, free: make([]*slot, 1)}
	for _, tc := range []struct {
		name    string
		workers []*Worker
		start   int
		want    int
	}{
		{"none", nil, 0, -1},
		{"all full", []*Worker{ready(1, 0), ready(1, 0)}, 0, -1},
		{"least loaded wins whatever the start", []*Worker{ready(2, 1), ready(1, 1), ready(3, 1)}, 2, 1},
		{"tie from 0", []*Worker{ready(0, 1), ready(0, 1), ready(0, 1)}, 0, 0},
		{"tie from 1", []*Worker{ready(0, 1), ready(0, 1), ready(0, 1)}, 1, 1},
		{"tie wraps", []*Worker{ready(0, 1), ready(1, 1), ready(0, 1)}, 3, 0},
		{"tie past the end of the list", []*Worker{ready(0, 1), ready(0, 1)}, 5, 1},
		{"leaving only as a last resort", []*Worker{leaving, ready(3, 1)}, 0, 1},
		{"leaving when alone", []*Worker{leaving, ready(1, 0)}, 0, 0},
		{"not accepting, unreachable skipped", []*Worker{starting, unreachable, ready(4, 1)}, 0, 2},
	} {
		if got := pick(tc.workers, tc.start); got != tc.want {
			t.Errorf("%s: pick = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestTakeTakesTurns: with every worker idle, consecutive requests go round the workers.
func TestTakeTakesTurns(t *testing.T) {
	p := NewPool(1, 0)
	for i := range 3 {
		w := &Worker{ID: i, state: Ready}
		s := &slot{worker: w}
		w.slots, w.free = []*slot{s}, []*slot{s}
		p.workers = append(p.workers, w)
	}
	var got []int
	for range 6 {
		p.mu.Lock()
		s := p.takeLocked()
		got = append(got, s.worker.ID)
		s.worker.returnSlotLocked(s)
		p.mu.Unlock()
	}
	if want := []int{0, 1, 2, 0, 1, 2}; !slices.Equal(got, want) {
		t.Fatalf("workers picked %v, want %v", got, want)
	}
}
