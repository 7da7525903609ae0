package proxy

import (
	"math/bits"
	"sync"
)

// Request bodies and buffered responses are read whole into memory; a 1 MiB upload echoed
// back is two 1 MiB buffers. Allocated fresh, each is zeroed by the runtime and, once the
// heap has been given back to the kernel, faulted in page by page: under 256 concurrent
// 1 MiB uploads that was most of the master's CPU (5.5 ms per request, against 2.4 at 16
// connections) and requests timed out. The buffers are reused instead, by size class.

const (
	minBufClass = 12 // 4 KiB
	maxBufClass = 24 // 16 MiB: larger buffers are allocated, and left to the GC
)

var bufPools [maxBufClass + 1]sync.Pool

// getBuf returns a buffer of n bytes (its contents undefined) and the class to give it
// back with putBuf; class -1 means it is not pooled.
func getBuf(n int) ([]byte, int) {
	class := max(minBufClass, bits.Len(uint(n-1)))
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
