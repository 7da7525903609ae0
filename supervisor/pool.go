package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/herd-server/herd/internal/rawio"
)

// unavailableError is a failure that means "no capacity now, try later": a front end
// answers it with 503, whatever its wording.
type unavailableError string

func (e unavailableError) Error() string     { return string(e) }
func (e unavailableError) Unavailable() bool { return true }

var (
	// ErrQueueFull: every slot is busy and the wait queue holds its maximum.
	ErrQueueFull error = unavailableError("all workers busy and the request queue is full")
	// ErrQueueTimeout: the request waited its whole queue timeout for a free slot.
	ErrQueueTimeout error = unavailableError("timed out waiting for a free worker")
	// ErrPoolClosed: the pool is shutting down and takes no more requests.
	ErrPoolClosed error = unavailableError("worker pool is shutting down")
)

// Pool hands out worker slots. A slot is one persistent Unix connection to one worker (one
// per thread of that worker); a request holds exactly one slot from its dispatch until its
// response is read. The pool picks the least-loaded accepting worker, and when every slot is
// busy the request waits in a bounded FIFO queue.
//
// Every field below mu is guarded by it. Exported methods lock; their unexported twins
// (suffix Locked) assume the lock is held.
type Pool struct {
	queueSize    int
	queueTimeout time.Duration
	dialTimeout  time.Duration

	mu      sync.Mutex
	workers []*Worker // every worker that is not dead, in spawn order
	waiters waitQueue // requests waiting for a slot
	closed  bool
	// nextPick is where the next scan of workers starts, just past the last one picked:
	// equally loaded workers take turns instead of the first in spawn order taking all.
	nextPick int
	// requestTimeout bounds each request's exchange with its worker (--timeout); 0: none.
	requestTimeout time.Duration
	// notify is called (with the lock held) when the supervisor has something to look at:
	// a draining worker's last request ended, or a worker reached its request limit.
	notify func()
	// onOverrun is called (with the lock held) when a request was released after its
	// deadline: its worker is stuck and must go.
	onOverrun func(*Worker)
	// pipelining lets a request go behind a young one on a busy worker (see followLocked).
	pipelining bool
	// pipelined counts the requests sent that way.
	pipelined atomic.Uint64
}

// grant is what a waiting request is given: a free slot to connect, or a place behind the
// request a worker serves (follower). Both zero: the pool closed.
type grant struct {
	slot     *slot
	follower *Lease
}

// slot is one connection to a worker. conn is nil until first used or after it broke; the
// request that takes the slot dials it (outside the lock). conn, raw and reader are written
// under Pool.mu only, and each lease keeps its own copy of them.
type slot struct {
	worker *Worker
	conn   net.Conn
	raw    *rawio.Conn // conn's raw form (see internal/rawio); nil if it has none
	reader *bufio.Reader
	// current is the request the slot carries, for status pages. It is an atomic pointer,
	// not a field under Pool.mu, so that the request path takes no extra lock to set it.
	current atomic.Pointer[CurrentRequest]
	// next is the request queued behind it, for status pages.
	next atomic.Pointer[CurrentRequest]

	// Guarded by Pool.mu.
	leader   *Lease // the request the worker serves on this connection; nil when free
	follower *Lease // the request sent behind it (pipelining); nil when none
	// poisoned: a follower's request may lie half-written in the connection: it cannot
	// carry another request once the leader is done.
	poisoned bool

	// queuedBy is the lease whose request waits in raw's pending bytes (Queue). It is set
	// and cleared by that lease's goroutine, which does the I/O that sends them, and read
	// in afterPending, called from that I/O: no lock.
	queuedBy *Lease
}

// afterPending is raw's AfterPending, bound once per connection (a bound method per
// request was an allocation): the queued request is out, the one behind may go.
func (s *slot) afterPending() {
	if l := s.queuedBy; l != nil {
		s.queuedBy = nil
		l.Written()
	}
}

// CurrentRequest is what a busy slot is doing, as the front end described it.
type CurrentRequest struct {
	Method string
	URI    string
	Since  time.Time // when the request arrived
}

// NewPool returns an empty pool.
func NewPool(queueSize int, queueTimeout time.Duration) *Pool {
	return &Pool{queueSize: queueSize, queueTimeout: queueTimeout, dialTimeout: 2 * time.Second}
}

// Lease is a slot held by one request. Release must be called exactly once.
type Lease struct {
	pool     *Pool
	slot     *slot
	deadline time.Time // zero without --timeout
	released bool
	start    time.Time // when the worker was given this request (a follower: its turn)

	// The connection as it was when the lease got it.
	conn   net.Conn
	raw    *rawio.Conn
	reader *bufio.Reader

	// sent is closed once this request is out (or will never be): the request behind it
	// waits for that before writing, prev being the sent of the request ahead of it. So
	// requests go into the connection in the order they were given places on it.
	sent       chan struct{}
	prev       chan struct{}
	sentClosed bool
	// A follower is sent behind another request on the same connection: behind is closed
	// when that request is done with the connection, lost (under Pool.mu) when the
	// connection did not survive it, so this request never reached the worker.
	behind   chan struct{}
	lost     bool // the worker never started it: it may go elsewhere
	orphaned bool // the connection was given up with it maybe started: it fails
	promoted bool
	began    bool // a follower started writing its request
	sendErr  error
	// connBroke: the connection failed under this request (EOF, reset, timeout), as
	// opposed to the proxy giving it up (a client gone, a malformed answer).
	connBroke bool
}

// ErrBehindLost: a request pipelined behind another never reached its worker, because the
// request ahead of it broke the connection. It is safe to send it elsewhere.
var ErrBehindLost = behindLostError{}

type behindLostError struct{}

func (behindLostError) Error() string {
	return "the request ahead on the worker connection failed; this one never reached the worker"
}

// Retry says the request can go to another worker.
func (behindLostError) Retry() bool { return true }

// ErrBehindOrphaned: a request pipelined behind another may have reached its worker, but
// the connection was given up before its answer (the request ahead was abandoned, not
// failed by the worker): it must not run twice, so it fails.
var ErrBehindOrphaned = errors.New("the request ahead on the worker connection was abandoned; this one's answer is lost")

// ConnBroke says the worker connection failed under the request (it read EOF, a reset or
// its deadline), before Release(false): a request pipelined behind it then provably never
// started (a worker serves its connection's requests in order) and is sent elsewhere.
// Without it, a request behind an abandoned one fails rather than risk running twice.
func (l *Lease) ConnBroke() { l.connBroke = true }

// Conn is the connection to the worker.
func (l *Lease) Conn() net.Conn { return l.conn }

// Reader reads the worker's responses on this connection. It outlives the request: bytes it
// buffered belong to the connection, not to one response.
func (l *Lease) Reader() *bufio.Reader { return l.reader }

// Queue makes the request (its uwsgi packet and body) go out with the first read of the
// answer, in the same poll (see internal/rawio): one system call less per request than a
// write, then a read that finds nothing yet. A request pipelined behind another is written
// at once instead, after its leader's. False when the connection cannot: write it then,
// between BeginWrite and Written.
func (l *Lease) Queue(packet, body []byte) bool {
	if l.raw == nil {
		return false
	}
	if l.behind == nil {
		l.slot.queuedBy = l
		l.raw.SetPending(packet, body)
		return true
	}
	l.BeginWrite()
	if l.pool.isLost(l) {
		l.sendErr = ErrBehindLost
	} else {
		l.sendErr = l.raw.Writev(packet, body)
	}
	l.Written()
	return true
}

// BeginWrite waits until the request may be written on the connection: at once for a
// request that has the connection to itself, after the request ahead for a follower.
func (l *Lease) BeginWrite() {
	if l.behind != nil && !l.began {
		<-l.prev
		l.pool.mu.Lock()
		l.began = true
		l.pool.mu.Unlock()
	}
}

// Written says the request is out (or failed to go): the one behind may write its own.
func (l *Lease) Written() {
	if !l.sentClosed {
		l.sentClosed = true
		close(l.sent)
	}
}

// WaitTurn waits until the worker's answer to this request is next on the connection: at
// once for a request that had the connection to itself; for a follower, once the request
// ahead of it is done. ErrBehindLost means it never reached the worker.
func (l *Lease) WaitTurn() error {
	if l.sendErr != nil {
		return l.sendErr
	}
	if l.behind == nil {
		return nil
	}
	<-l.behind
	l.pool.mu.Lock()
	defer l.pool.mu.Unlock()
	switch {
	case l.lost:
		return ErrBehindLost
	case l.orphaned:
		return ErrBehindOrphaned
	}
	return nil
}

// Followed reports whether a request was sent (or half-sent) behind this one: the bytes
// after its answer are that request's, not a worker's excess, and a reset of the
// connection may be due to that request's unread bytes rather than this one's.
func (l *Lease) Followed() bool {
	l.pool.mu.Lock()
	defer l.pool.mu.Unlock()
	return l.slot.leader == l && (l.slot.follower != nil || l.slot.poisoned)
}

// WorkerID names the worker that serves the request, for logs.
func (l *Lease) WorkerID() int { return l.slot.worker.ID }

// WorkerPid is the worker's process id, for logs.
func (l *Lease) WorkerPid() int { return l.slot.worker.Pid }

// Describe tells the pool which request the slot carries, for status pages; since is when
// the request arrived.
func (l *Lease) Describe(method, uri string, since time.Time) {
	cur := &CurrentRequest{Method: method, URI: uri, Since: since}
	if l.behind != nil && !l.pool.isPromoted(l) {
		l.slot.next.Store(cur)
		return
	}
	l.slot.current.Store(cur)
}

// Release returns the slot. reusable=false closes the connection: the next request on this
// slot dials a new one. Pass false whenever the response was not read to its end.
//
// A lease given back unreusable after its deadline means the worker overran --timeout (the
// proxy's read failed with os.ErrDeadlineExceeded): the supervisor then kills that worker.
func (l *Lease) Release(reusable bool) {
	if l.released {
		return
	}
	l.released = true
	if l.slot.queuedBy == l {
		l.slot.queuedBy = nil // its request never went: nothing may call it out later
	}
	l.Written()
	overran := !reusable && !l.deadline.IsZero() && !time.Now().Before(l.deadline)
	l.pool.releaseLease(l, reusable, overran)
}

// Acquire waits for a free slot of an accepting worker and connects it. It fails with
// ErrQueueFull, ErrQueueTimeout, ErrPoolClosed, a dial error (the worker died: try again), or
// the context's error.
func (p *Pool) Acquire(ctx context.Context) (*Lease, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrPoolClosed
	}
	if s := p.takeLocked(); s != nil {
		p.mu.Unlock()
		return p.connect(s)
	}
	if l := p.followLocked(time.Now()); l != nil {
		p.mu.Unlock()
		return l, nil
	}
	if p.waiters.len() >= p.queueSize {
		p.mu.Unlock()
		return nil, ErrQueueFull
	}
	w := getWaiter(p.queueTimeout)
	p.waiters.push(w)
	p.mu.Unlock()

	var err error
	select {
	case g := <-w.ch:
		putWaiter(w)
		switch {
		case g.follower != nil:
			return g.follower, nil
		case g.slot == nil:
			return nil, ErrPoolClosed
		}
		return p.connect(g.slot)
	case <-ctx.Done():
		err = ctx.Err()
	case <-w.timer.C:
		err = ErrQueueTimeout
	}
	p.mu.Lock()
	if p.waiters.remove(w) {
		p.mu.Unlock()
		putWaiter(w)
		return nil, err
	}
	p.mu.Unlock()
	// A slot was handed over while we gave up: give it back.
	g := <-w.ch
	putWaiter(w)
	switch {
	case g.slot != nil:
		p.giveBack(g.slot)
	case g.follower != nil:
		g.follower.Release(false) // nothing written: the connection is untouched
	}
	return nil, err
}

// connect dials the slot's connection if it has none, and makes the lease of the request
// that took the slot.
func (p *Pool) connect(s *slot) (*Lease, error) {
	lease := &Lease{pool: p, slot: s, start: time.Now(), sent: make(chan struct{})}
	p.mu.Lock()
	s.leader = lease
	conn := s.conn
	p.mu.Unlock()
	if conn == nil {
		c, err := net.DialTimeout("unix", s.worker.SocketPath, p.dialTimeout)
		if err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
				// Its listening socket is gone: the process is dead or dying, and its
				// reaping is a moment away. Until then, send nothing more its way.
				p.mu.Lock()
				s.worker.unreachable = true
				p.mu.Unlock()
			}
			lease.Release(false)
			return nil, fmt.Errorf("connect to worker %d: %w", s.worker.ID, err)
		}
		var src io.Reader = c
		raw, ok := rawio.New(c)
		if ok {
			src = raw
		}
		if raw != nil {
			// The request is out once the pending bytes went (see Queue): a follower may go.
			raw.AfterPending = s.afterPending
		}
		p.mu.Lock()
		s.conn, s.raw, s.reader = c, raw, bufio.NewReaderSize(src, 16<<10)
		p.mu.Unlock()
	}
	p.mu.Lock()
	lease.conn, lease.raw, lease.reader = s.conn, s.raw, s.reader
	p.mu.Unlock()
	if p.requestTimeout > 0 {
		// The deadline makes a stuck worker's read fail in the proxy, which answers 504;
		// reads and writes both count, so a worker that stops reading the body is caught too.
		lease.deadline = lease.start.Add(p.requestTimeout)
		_ = lease.conn.SetDeadline(lease.deadline)
	}
	return lease, nil
}

// Pipelining: when every slot is busy, a request may be sent behind the one a worker is
// serving, on the same connection, instead of waiting in the master's queue. The worker
// then finds it the moment it answers, without sleeping in recv and being woken again:
// on the 2-core machine that was a quarter more hello requests per second. The risk is a
// request stuck behind a slow one while another worker frees up, so a request goes only
// behind one that started less than pipelineMaxAge ago, on a worker whose recent requests
// took less than pipelineMaxService on average (a Django view's tens of microseconds,
// not a report's seconds).
const (
	pipelineMaxAge     = time.Millisecond
	pipelineMaxService = time.Millisecond
)

// followLocked sends the request behind a young one of a fast accepting worker, or
// returns nil.
func (p *Pool) followLocked(now time.Time) *Lease {
	if !p.pipelining {
		return nil
	}
	for i := range p.workers {
		w := p.workers[(p.nextPick+i)%len(p.workers)]
		if !p.canFollowLocked(w) {
			continue
		}
		for _, s := range w.slots {
			l := s.leader
			if l == nil || l.behind != nil && !l.promoted || s.follower != nil || s.poisoned || s.raw == nil ||
				now.Sub(l.start) > pipelineMaxAge {
				continue
			}
			return p.followBehindLocked(s)
		}
	}
	return nil
}

// canFollowLocked says whether w may be sent a request behind the one it serves.
func (p *Pool) canFollowLocked(w *Worker) bool {
	return w.takesRequestsLocked() && !w.leavingLocked() && w.served > 0 && w.serviceAvg <= pipelineMaxService
}

// followBehindLocked makes the lease of a request sent behind s's leader.
func (p *Pool) followBehindLocked(s *slot) *Lease {
	w := s.worker
	f := &Lease{pool: p, slot: s, behind: make(chan struct{}), conn: s.conn, raw: s.raw, reader: s.reader,
		sent: make(chan struct{}), prev: s.leader.sent}
	s.follower = f
	w.inflight++
	w.Requests++
	p.pipelined.Add(1)
	return f
}

func (p *Pool) isLost(l *Lease) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return l.lost
}

func (p *Pool) isPromoted(l *Lease) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return l.promoted
}

// takeLocked picks a free slot of the least-loaded accepting worker, or nil. A worker on
// its way out (retiring, or past its request limit) serves only when no other one can: it
// is kept accepting only so that capacity does not drop before its replacement is ready.
// Among equally good workers the turn goes round (see pick).
func (p *Pool) takeLocked() *slot {
	at := pick(p.workers, p.nextPick)
	if at < 0 {
		return nil
	}
	p.nextPick = at + 1
	return p.workers[at].takeSlotLocked()
}

// pick returns the index of the worker that should get the next request, scanning from
// start round the list so that ties go to the first one at or after start; -1 when none
// can take it.
func pick(workers []*Worker, start int) int {
	best := -1
	for i := range workers {
		at := (start + i) % len(workers)
		w := workers[at]
		if !w.takesRequestsLocked() || len(w.free) == 0 {
			continue
		}
		if best < 0 || better(w, workers[best]) {
			best = at
		}
	}
	return best
}

// better reports whether a should get the next request rather than b.
func better(a, b *Worker) bool {
	if a.leavingLocked() != b.leavingLocked() {
		return !a.leavingLocked()
	}
	return a.inflight < b.inflight
}

// giveBack returns a slot handed to a waiter that gave up before taking it.
func (p *Pool) giveBack(s *slot) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s.worker.Requests--
	p.freeSlotLocked(s)
}

// releaseLease ends a lease: a leader gives the connection to its follower or frees the
// slot; a follower that never got its turn leaves.
func (p *Pool) releaseLease(l *Lease, reusable, overran bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := l.slot
	w := s.worker
	if overran {
		// Before the slot can go to a waiting request: the worker is hung.
		w.stuck = true
		if p.onOverrun != nil {
			p.onOverrun(w)
		}
	}
	if s.leader != l {
		// A follower leaving before its turn: its request may lie half-sent in the
		// connection, which then serves no request after the leader.
		if s.follower == l {
			s.follower = nil
			s.poisoned = s.poisoned || l.began // bytes of it may be in the connection
			s.next.Store(nil)
		}
		w.inflight--
		p.afterReleaseLocked(w)
		return
	}
	l.slot.current.Store(nil)
	if reusable {
		w.served++
		// A moving average of the time the worker takes per request, for pipelining.
		w.serviceAvg += (time.Since(l.start) - w.serviceAvg) / 8
	}
	if w.requestLimit > 0 && w.Requests >= w.requestLimit && !w.limitNoted && p.notify != nil {
		w.limitNoted = true
		p.notify()
	}
	if f := s.follower; f != nil {
		s.follower = nil
		w.inflight--
		if !reusable || s.poisoned {
			// The slot is the follower's until it releases too. Its request never
			// started when the worker broke the connection or hung under the leader (it
			// serves in order); otherwise the worker may have begun it.
			s.closeConn()
			if l.connBroke || overran {
				f.lost = true
			} else {
				f.orphaned = true
			}
		} else {
			f.promoted = true
			f.start = time.Now()
			if p.requestTimeout > 0 {
				f.deadline = f.start.Add(p.requestTimeout)
				_ = f.conn.SetDeadline(f.deadline)
			}
			s.current.Store(s.next.Swap(nil))
		}
		s.leader = f
		close(f.behind)
		if f.promoted && p.waiters.len() > 0 && p.pipelining && p.canFollowLocked(w) {
			// Keep the worker's next request waiting on its connection while requests queue:
			// the oldest waiter goes behind the one just promoted.
			next := p.waiters.pop()
			next.ch <- grant{follower: p.followBehindLocked(s)}
		}
		p.afterReleaseLocked(w)
		return
	}
	if !reusable || s.poisoned || !w.state.accepting() && w.state != Draining {
		s.closeConn()
	}
	p.freeSlotLocked(s)
}

// freeSlotLocked hands a slot no request holds to the oldest waiter, or frees it.
func (p *Pool) freeSlotLocked(s *slot) {
	w := s.worker
	s.leader = nil
	s.poisoned = false
	if w.takesRequestsLocked() && p.waiters.len() > 0 {
		// Hand the slot straight to the oldest waiter: it stays in use, the counts stay.
		next := p.waiters.pop()
		w.Requests++
		next.ch <- grant{slot: s}
		return
	}
	w.returnSlotLocked(s)
	p.afterReleaseLocked(w)
}

func (p *Pool) afterReleaseLocked(w *Worker) {
	if w.state == Draining && w.inflight == 0 && p.notify != nil {
		p.notify()
	}
}

// serveWaitersLocked hands free slots to waiting requests, after a worker became ready.
func (p *Pool) serveWaitersLocked() {
	for p.waiters.len() > 0 {
		s := p.takeLocked()
		if s == nil {
			return
		}
		next := p.waiters.pop()
		next.ch <- grant{slot: s}
	}
}

// add puts a new (starting) worker in the pool.
func (p *Pool) add(w *Worker) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.workers = append(p.workers, w)
}

// markReady makes a starting worker take requests.
func (p *Pool) markReady(w *Worker) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := w.transition(Ready); err != nil {
		return err
	}
	p.serveWaitersLocked()
	return nil
}

// setState moves a worker to a state outside the request path (draining, stopping).
func (p *Pool) setState(w *Worker, to State) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return w.transition(to)
}

// stateOf reads a worker's state: request goroutines move it between ready and busy.
func (p *Pool) stateOf(w *Worker) State {
	p.mu.Lock()
	defer p.mu.Unlock()
	return w.state
}

// setLeaving marks a worker as on its way out (or back in, after a failed reload): it then
// gets requests only when no other worker can take them.
func (p *Pool) setLeaving(w *Worker, leaving bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w.leaving = leaving
}

// requestLimitReached reports whether a worker served its --max-requests.
func (p *Pool) requestLimitReached(w *Worker) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return w.requestLimit > 0 && w.Requests >= w.requestLimit
}

// servedAny reports whether the worker gave at least one response in full.
func (p *Pool) servedAny(w *Worker) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return w.served > 0
}

// idle reports whether the worker holds no request.
func (p *Pool) idle(w *Worker) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return w.inflight == 0
}

// remove drops a reaped worker. Requests still holding its slots fail on their own (the
// connection is dead) and their release closes what is left.
func (p *Pool) remove(w *Worker) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.state != Dead {
		_ = w.transition(Dead)
	}
	for _, s := range w.free {
		s.closeConn()
	}
	for i, x := range p.workers {
		if x == w {
			p.workers = append(p.workers[:i], p.workers[i+1:]...)
			break
		}
	}
}

// close refuses new requests and fails every waiting one.
func (p *Pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for p.waiters.len() > 0 {
		p.waiters.pop().ch <- grant{}
	}
}

// Snapshot describes the workers for status output and tests.
type WorkerInfo struct {
	ID         int
	Pid        int
	Generation int
	State      State
	InFlight   int
	Requests   uint64
	Started    time.Time        // when the process was spawned
	Current    []CurrentRequest // the requests it serves now, one per busy slot
}

// Workers returns a snapshot of the pool's workers.
func (p *Pool) Workers() []WorkerInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]WorkerInfo, 0, len(p.workers))
	for _, w := range p.workers {
		out = append(out, w.info())
	}
	return out
}

func (p *Pool) info(w *Worker) WorkerInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	return w.info()
}

// Pipelined is how many requests were sent behind another on a worker connection.
func (p *Pool) Pipelined() uint64 { return p.pipelined.Load() }

// QueueLen is the number of requests waiting for a slot.
func (p *Pool) QueueLen() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waiters.len()
}

func (s *slot) closeConn() {
	if s.conn != nil {
		_ = s.conn.Close()
		s.conn = nil
		s.raw = nil
		s.reader = nil
	}
}
