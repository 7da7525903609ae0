package logevery

import (
	"sync"
	"testing"
	"time"
)

// Of many events at once, one is let through, and the next one let through after the
// interval counts the ones held back.
func TestEvery(t *testing.T) {
	e := New(time.Hour)
	var wg sync.WaitGroup
	var mu sync.Mutex
	through := 0
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, _ := e.Allow(); ok {
				mu.Lock()
				through++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if through != 1 {
		t.Fatalf("%d of 100 events let through within the interval, want 1", through)
	}
	e.mu.Lock()
	e.last = time.Now().Add(-2 * time.Hour).UnixNano() // the interval is over
	e.mu.Unlock()
	if ok, missed := e.Allow(); !ok || missed != 99 {
		t.Fatalf("after the interval: %v, %d missed; want true, 99", ok, missed)
	}
}
