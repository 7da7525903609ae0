package supervisor

import (
	"testing"

	"github.com/rs/zerolog"
)

// TestTransitionTable: Supervisor.transition allows exactly the moves of the table, and a
// refused move changes nothing.
func TestTransitionTable(t *testing.T) {
	legal := []struct{ from, to State }{
		{Starting, Ready}, {Starting, Stopping}, {Starting, Dead},
		{Ready, Draining}, {Ready, Stopping}, {Ready, Dead},
		{Draining, Stopping}, {Draining, Dead}, {Stopping, Dead},
	}
	illegal := []struct{ from, to State }{
		{Starting, Draining}, {Ready, Starting}, {Ready, Ready},
		{Draining, Ready}, {Stopping, Ready}, {Stopping, Draining},
		{Dead, Starting}, {Dead, Ready}, {Dead, Dead}, {Draining, Starting},
	}
	s := New(Options{Log: zerolog.Nop()}, NewPool(0, 0))
	worker := func(st State) *Worker {
		w := &Worker{}
		w.state.Store(int32(st))
		w.member = newMember(w, 1, 0)
		s.pool.add(w.member)
		return w
	}
	for _, tt := range legal {
		w := worker(tt.from)
		if err := s.transition(w, tt.to); err != nil {
			t.Errorf("%v -> %v refused: %v", tt.from, tt.to, err)
		}
		if w.State() != tt.to {
			t.Errorf("%v -> %v left state %v", tt.from, tt.to, w.State())
		}
	}
	for _, tt := range illegal {
		w := worker(tt.from)
		if err := s.transition(w, tt.to); err == nil {
			t.Errorf("%v -> %v allowed, want refused", tt.from, tt.to)
		}
		if w.State() != tt.from {
			t.Errorf("refused %v -> %v still changed state to %v", tt.from, tt.to, w.State())
		}
	}
}

// TestDeadLeavesThePool: the move to Dead takes the worker's slots out of the pool, so no
// request is handed to a reaped process.
func TestDeadLeavesThePool(t *testing.T) {
	s := New(Options{Log: zerolog.Nop()}, NewPool(0, 0))
	w := &Worker{}
	w.member = newMember(w, 2, 0)
	s.pool.add(w.member)
	if err := s.transition(w, Ready); err != nil {
		t.Fatal(err)
	}
	if n := len(s.pool.Workers()); n != 1 {
		t.Fatalf("%d workers in the pool, want 1", n)
	}
	if err := s.transition(w, Dead); err != nil {
		t.Fatal(err)
	}
	if n := len(s.pool.Workers()); n != 0 {
		t.Fatalf("a dead worker is still in the pool (%d workers)", n)
	}
}
