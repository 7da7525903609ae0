package supervisor

import (
	"sync"
	"time"
)

// waitQueue is the FIFO of requests waiting for a slot: a ring, so that a queue that never
// empties under steady load (16 clients on 2 workers) does not reallocate as a sliced
// slice does when its front moves on.
type waitQueue struct {
	buf  []*waiter
	head int // index of the oldest
	n    int
}

func (q *waitQueue) len() int { return q.n }

func (q *waitQueue) push(w *waiter) {
	if q.n == len(q.buf) {
		grown := make([]*waiter, max(16, 2*len(q.buf)))
		for i := range q.n {
			grown[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = grown, 0
	}
	q.buf[(q.head+q.n)%len(q.buf)] = w
	q.n++
}

// pop takes the oldest; the queue must not be empty.
func (q *waitQueue) pop() *waiter {
	w := q.buf[q.head]
	q.buf[q.head] = nil
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return w
}

// remove takes w out wherever it is (a request that gave up), keeping the order.
func (q *waitQueue) remove(w *waiter) bool {
	for i := range q.n {
		if q.buf[(q.head+i)%len(q.buf)] != w {
			continue
		}
		for j := i; j < q.n-1; j++ {
			q.buf[(q.head+j)%len(q.buf)] = q.buf[(q.head+j+1)%len(q.buf)]
		}
		q.buf[(q.head+q.n-1)%len(q.buf)] = nil
		q.n--
		return true
	}
	return false
}

// waiter is one request waiting for a slot. Waiters are reused, with their channel and
// timer: a queued request cost three allocations (waiter, channel, timer) before.
type waiter struct {
	ch    chan grant // buffered: a hand-over never blocks the releaser
	timer *time.Timer
}

var waiterPool = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &waiter{ch: make(chan grant, 1), timer: t}
}}

// getWaiter returns a waiter whose timer fires after d.
func getWaiter(d time.Duration) *waiter {
	w := waiterPool.Get().(*waiter)
	w.timer.Reset(d)
	return w
}

// putWaiter keeps w for another request: its channel must be empty and no queue may hold it.
func putWaiter(w *waiter) {
	w.timer.Stop() // since Go 1.23 no stale tick survives a Stop or Reset
	waiterPool.Put(w)
}
