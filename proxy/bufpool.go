package proxy

import (
	"math/bits"
	"sync"
	"time"
)

// Request bodies and buffered responses are read whole into memory; a 1 MiB upload echoed
// back is two 1 MiB buffers. Allocated fresh, each is zeroed by the runtime and, once the
// heap has been given back to the kernel, faulted in page by page: under 256 concurrent
// 1 MiB uploads that was most of the master's CPU (5.5 ms per request, against 2.4 at 16
// connections) and requests timed out. The buffers are reused instead, by size class: a
// power of two from 4 KiB to 16 MiB.

const (
	minBufClass = 12 // 4 KiB
	maxBufClass = 24 // 16 MiB: larger buffers are allocated, and left to the GC
)

// bufClass is the class of a buffer of n bytes: its capacity is 1<<class. Past
// maxBufClass, the buffer is n bytes and is not kept for reuse.
func bufClass(n int) int { return max(minBufClass, bits.Len(uint(n-1))) }

var bufPools [maxBufClass + 1]sync.Pool

// getBuf returns a buffer of n bytes (its contents undefined) and the class to give it
// back with putBuf; class -1 means it is not pooled. Its buffers are counted nowhere: for
// --body-memory 0 (no bound), and for a body's first bytes.
func getBuf(n int) ([]byte, int) {
	class := bufClass(n)
	if n <= 0 || class > maxBufClass {
		return make([]byte, max(n, 0)), -1
	}
	if p, ok := bufPools[class].Get().(*[]byte); ok {
		return (*p)[:n], class
	}
	return make([]byte, n, 1<<class), class
}

// putBuf gives back a buffer from getBuf; nothing may use it after.
func putBuf(b []byte, class int) {
	if class < 0 {
		return
	}
	b = b[:cap(b)]
	bufPools[class].Put(&b)
}

// memory is --body-memory: the buffers request bodies and buffered answers are read into,
// counted by what they really hold, their capacity (a 513 KiB body takes a 1 MiB buffer:
// counted by their lengths, --body-memory 128MiB let the master reach 226 MiB), together
// with the buffers kept for reuse. What it holds, in use or kept, stays within the bound:
// a buffer that does not fit makes room by dropping kept ones, or is not given (the body
// goes to a file, the answer through a spool).
//
// Kept buffers are dropped too when they were not reused for a while (keptFor), as
// sync.Pool drops its own at a GC: a burst does not hold its memory for ever.
type memory struct {
	mu    sync.Mutex
	used  int64 // bytes of buffers in use and kept
	inUse int64
	// kept are the buffers for reuse by class, the ones put back since the last trim in
	// fresh, those from before it in stale (dropped at the next trim unless reused first).
	fresh, stale [maxBufClass + 1][][]byte
	trimmed      time.Time
}

// keptFor is how long a buffer is kept for reuse at least (and at most twice that).
const keptFor = 30 * time.Second

// get returns a buffer of n bytes (its contents undefined) within limit bytes in all, or
// false when there is no room. With no limit (0) the buffer comes from getBuf and is not
// counted.
func (m *memory) get(n int, limit int64) ([]byte, bool) {
	if limit <= 0 {
		b, _ := getBuf(n)
		return b, true
	}
	class := bufClass(n)
	size := int64(n)
	if class <= maxBufClass {
		size = 1 << class
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.trim()
	if class <= maxBufClass {
		if b, ok := pop(&m.fresh[class]); ok {
			m.inUse += size
			return b[:n], true
		}
		if b, ok := pop(&m.stale[class]); ok {
			m.inUse += size
			return b[:n], true
		}
	}
	for m.used+size > limit && m.dropOne() {
	}
	if m.used+size > limit {
		return nil, false
	}
	m.used += size
	m.inUse += size
	return make([]byte, n, size), true
}

// put gives back a buffer from get with the same limit; nothing may use it after.
func (m *memory) put(b []byte, limit int64) {
	if limit <= 0 {
		if class := bufClass(cap(b)); 1<<class == cap(b) && class <= maxBufClass {
			putBuf(b, class)
		}
		return
	}
	size := int64(cap(b))
	class := bufClass(cap(b))
	m.mu.Lock()
	defer m.mu.Unlock()
	m.inUse -= size
	if class > maxBufClass || 1<<class != size {
		m.used -= size
		return
	}
	m.fresh[class] = append(m.fresh[class], b[:cap(b)])
	m.trim()
}

// trim drops the kept buffers not reused since the last trim, every keptFor.
func (m *memory) trim() {
	now := time.Now()
	if now.Sub(m.trimmed) < keptFor {
		return
	}
	m.trimmed = now
	for c := range m.stale {
		for _, b := range m.stale[c] {
			m.used -= int64(cap(b))
		}
		clear(m.stale[c])
		m.stale[c], m.fresh[c] = m.fresh[c], m.stale[c][:0]
	}
}

// dropOne drops one kept buffer, the largest, to make room; false when none is kept.
func (m *memory) dropOne() bool {
	for c := maxBufClass; c >= minBufClass; c-- {
		for _, list := range []*[][]byte{&m.stale[c], &m.fresh[c]} {
			if b, ok := pop(list); ok {
				m.used -= int64(cap(b))
				return true
			}
		}
	}
	return false
}

func pop(list *[][]byte) ([]byte, bool) {
	n := len(*list)
	if n == 0 {
		return nil, false
	}
	b := (*list)[n-1]
	(*list)[n-1] = nil
	*list = (*list)[:n-1]
	return b, true
}

// held reports the bytes in use and in all (in use and kept).
func (m *memory) held() (inUse, all int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.inUse, m.used
}
