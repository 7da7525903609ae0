package supervisor

import "testing"

func TestTransitionTable(t *testing.T) {
	legal := []struct{ from, to State }{
		{Starting, Ready}, {Starting, Stopping}, {Starting, Dead},
		{Ready, Busy}, {Busy, Ready}, {Ready, Draining}, {Busy, Draining},
		{Ready, Stopping}, {Busy, Stopping}, {Ready, Dead}, {Busy, Dead},
		{Draining, Stopping}, {Draining, Dead}, {Stopping, Dead},
	}
	illegal := []struct{ from, to State }{
		{Starting, Busy}, {Starting, Draining}, {Ready, Starting}, {Ready, Ready},
		{Draining, Ready}, {Draining, Busy}, {Stopping, Ready}, {Stopping, Draining},
		{Dead, Starting}, {Dead, Ready}, {Dead, Dead}, {Busy, Starting},
	}
	for _, tt := range legal {
		w := &Worker{state: tt.from}
		if err := w.transition(tt.to); err != nil {
			t.Errorf("%v -> %v refused: %v", tt.from, tt.to, err)
		}
		if w.state != tt.to {
			t.Errorf("%v -> %v left state %v", tt.from, tt.to, w.state)
		}
	}
	for _, tt := range illegal {
		w := &Worker{state: tt.from}
		if err := w.transition(tt.to); err == nil {
			t.Errorf("%v -> %v allowed, want refused", tt.from, tt.to)
		}
		if w.state != tt.from {
			t.Errorf("refused %v -> %v still changed state to %v", tt.from, tt.to, w.state)
		}
	}
}
