package supervisor

import (
	"slices"
	"testing"
)

func TestPickLeastLoadedThenRoundRobin(t *testing.T) {
	newM := func(st State, inflight, free int) *member {
		w := &Worker{}
		w.state.Store(int32(st))
		return &member{w: w, inflight: inflight, free: make([]*slot, free)}
	}
	ready := func(inflight, free int) *member { return newM(Ready, inflight, free) }
	leaving := ready(0, 1)
	leaving.leaving = true
	unreachable := ready(0, 1)
	unreachable.unreachable = true
	starting := newM(Starting, 0, 1)
	for _, tc := range []struct {
		name    string
		workers []*member
		start   int
		want    int
	}{
		{"none", nil, 0, -1},
		{"all full", []*member{ready(1, 0), ready(1, 0)}, 0, -1},
		{"least loaded wins whatever the start", []*member{ready(2, 1), ready(1, 1), ready(3, 1)}, 2, 1},
		{"tie from 0", []*member{ready(0, 1), ready(0, 1), ready(0, 1)}, 0, 0},
		{"tie from 1", []*member{ready(0, 1), ready(0, 1), ready(0, 1)}, 1, 1},
		{"tie wraps", []*member{ready(0, 1), ready(1, 1), ready(0, 1)}, 3, 0},
		{"tie past the end of the list", []*member{ready(0, 1), ready(0, 1)}, 5, 1},
		{"leaving only as a last resort", []*member{leaving, ready(3, 1)}, 0, 1},
		{"leaving when alone", []*member{leaving, ready(1, 0)}, 0, 0},
		{"not accepting, unreachable skipped", []*member{starting, unreachable, ready(4, 1)}, 0, 2},
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
		w := &Worker{ID: i}
		w.state.Store(int32(Ready))
		p.members = append(p.members, newMember(w, 1, 0))
	}
	var got []int
	for range 6 {
		p.mu.Lock()
		s := p.takeLocked()
		got = append(got, s.member.w.ID)
		s.member.returnSlotLocked(s)
		p.mu.Unlock()
	}
	if want := []int{0, 1, 2, 0, 1, 2}; !slices.Equal(got, want) {
		t.Fatalf("workers picked %v, want %v", got, want)
	}
}
