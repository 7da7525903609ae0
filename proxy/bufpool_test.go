package proxy

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// TestMemoryStaysWithinItsLimit: buffers of every class taken and given back by many
// goroutines at once: what the memory holds, in use and kept, never passes its limit; and
// once they are all given back, the kept ones make room for a buffer of the whole limit.
func TestMemoryStaysWithinItsLimit(t *testing.T) {
	const limit = 8 << 20
	var m memory
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 2000 {
				n := 1 + r.IntN(3<<20)
				b, ok := m.get(n, limit)
				if _, all := m.held(); all > limit {
					t.Errorf("%d bytes held, past the limit of %d", all, limit)
					return
				}
				if !ok {
					continue
				}
				if len(b) != n || cap(b) != 1<<bufClass(n) {
					t.Errorf("asked %d, got %d of %d", n, len(b), cap(b))
				}
				m.put(b, limit)
			}
		}()
	}
	wg.Wait()
	if inUse, all := m.held(); inUse != 0 || all > limit {
		t.Fatalf("after: %d in use, %d held", inUse, all)
	}
	b, ok := m.get(limit, limit)
	if _, all := m.held(); !ok || all != limit {
		t.Fatalf("a buffer of the whole limit after: %v, %d held", ok, all)
	}
	m.put(b, limit)
}

// Kept buffers not reused for keptFor are dropped at the next trim after it: a burst
// does not hold its memory for ever.
func TestMemoryDropsBuffersNotReused(t *testing.T) {
	var m memory
	b, _ := m.get(1<<20, 4<<20)
	m.put(b, 4<<20)
	if _, all := m.held(); all != 1<<20 {
		t.Fatalf("kept %d, want 1 MiB", all)
	}
	for range 2 { // a trim makes it stale, the next one drops it
		m.mu.Lock()
		m.trimmed = time.Now().Add(-keptFor)
		m.trim()
		m.mu.Unlock()
	}
	if _, all := m.held(); all != 0 {
		t.Fatalf("still %d kept after two trims without reuse", all)
	}
}
