package supervisor

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestWaitQueue checks the ring against a plain slice through pushes, pops and removals
// that wrap around and grow it.
func TestWaitQueue(t *testing.T) {
	var q waitQueue
	var model []*waiter
	rng := rand.New(rand.NewPCG(1, 2))
	for step := range 20000 {
		switch op := rng.IntN(10); {
		case op < 5:
			w := &waiter{}
			q.push(w)
			model = append(model, w)
		case op < 8 && len(model) > 0:
			if got := q.pop(); got != model[0] {
				t.Fatalf("step %d: pop gave another waiter than the oldest", step)
			}
			model = model[1:]
		case len(model) > 0:
			i := rng.IntN(len(model))
			if !q.remove(model[i]) {
				t.Fatalf("step %d: remove did not find a queued waiter", step)
			}
			model = slices.Delete(model, i, i+1)
			if q.remove(&waiter{}) {
				t.Fatalf("step %d: removed a waiter never queued", step)
			}
		}
		if q.len() != len(model) {
			t.Fatalf("step %d: len %d, want %d", step, q.len(), len(model))
		}
	}
	for len(model) > 0 {
		if q.pop() != model[0] {
			t.Fatal("drain out of order")
		}
		model = model[1:]
	}
}
