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
// The pool owns the slots and what they carry; the supervisor owns the processes and their
// lifecycle, and tells the pool of each worker through add and remove (and, by the
// worker's State, whether it takes requests).
//
// Every field below mu is guarded by it, and so is every member. Exported methods lock;
// their unexported twins (suffix Locked) assume the lock is held.
type Pool struct {
	queueSize    int
	queueTimeout time.Duration
	dialTimeout  time.Duration

	mu      sync.Mutex
	members []*member // every worker not reaped yet, in spawn order
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
}

// member is the pool's record of one worker: its slots and what the request path counts of
// it. Guarded by Pool.mu.
type member struct {
	w     *Worker // identity and state; the pool never writes it
	slots []*slot // all of them, free or not
	free  []*slot
	// inflight counts the requests it holds (a request sent behind another included);
	// requests counts every request it was given.
	inflight int
	requests uint64
	// unreachable: a connect was refused, so the process is gone though not reaped yet.
	unreachable bool
	// stuck: a request on it overran --timeout. It takes no more requests: the supervisor
	// kills it, and until then anything sent its way would hang as that request did.
	stuck bool
	// served counts the responses it gave in full; a worker that served is no crash loop.
	served uint64
	// leaving: it is to be replaced (reload, recycling, scale-down) and serves only
	// when no other worker can.
	leaving bool
	// requestLimit is its --max-requests (with jitter), 0 for none; limitNoted says the
	// supervisor was told it reached it.
	requestLimit uint64
	limitNoted   bool
	// framed: the worker speaks the framed link (its ready message said so); its slots are
	// streams on mux, dialed by the first request (mux.go, muxpool.go).
	framed  bool
	mux     *muxConn
	dialMu  sync.Mutex // held while mux is dialed, not under Pool.mu
	removed bool       // reaped: a link dialed now is closed at once
}

// newMember makes the pool's record of a worker with n slots.
func newMember(w *Worker, n int, requestLimit uint64) *member {
	m := &member{w: w, requestLimit: requestLimit}
	for range n {
		m.slots = append(m.slots, &slot{member: m})
	}
	m.free = append(m.free, m.slots...)
	return m
}

// takesRequestsLocked reports whether the worker may be handed a request now.
func (m *member) takesRequestsLocked() bool {
	return m.w.State().accepting() && !m.unreachable && !m.stuck
}

// leavingLocked reports whether the worker should get requests only as a last resort.
func (m *member) leavingLocked() bool {
	return m.leaving || m.requestLimit > 0 && m.requests >= m.requestLimit
}

func (m *member) takeSlotLocked() *slot {
	n := len(m.free)
	s := m.free[n-1]
	m.free = m.free[:n-1]
	m.inflight++
	m.requests++
	return s
}

func (m *member) returnSlotLocked(s *slot) {
	m.free = append(m.free, s)
	m.inflight--
}

// grant is what a waiting request is given: a free slot to connect; nil when the pool
// closed.
type grant struct {
	slot *slot
}

// slot is one connection to a worker. conn is nil until first used or after it broke; the
// request that takes the slot dials it (outside the lock). conn, raw and reader are written
// under Pool.mu only, and each lease keeps its own copy of them.
type slot struct {
	member *member
	conn   net.Conn
	raw    *rawio.Conn // conn's raw form (see internal/rawio); nil if it has none
	reader *bufio.Reader
	// current is the request the slot carries, for status pages. It is an atomic pointer,
	// not a field under Pool.mu, so that the request path takes no extra lock to set it.
	current atomic.Pointer[CurrentRequest]

	// Guarded by Pool.mu.
	leader *Lease // the request the worker serves on this connection; nil when free
}

func (s *slot) closeConn() {
	if s.conn != nil {
		_ = s.conn.Close()
		s.conn = nil
		s.raw = nil
		s.reader = nil
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
		if g.slot == nil {
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
	if g.slot != nil {
		p.giveBack(g.slot)
	}
	return nil, err
}

// connect dials the slot's connection if it has none, and makes the lease of the request
// that took the slot.
func (p *Pool) connect(s *slot) (*Lease, error) {
	lease := &Lease{pool: p, slot: s, start: time.Now()}
	p.mu.Lock()
	s.leader = lease
	conn := s.conn
	framed := s.member.framed
	p.mu.Unlock()
	if framed {
		return p.connectStream(lease)
	}
	if conn == nil {
		c, err := net.DialTimeout("unix", s.member.w.SocketPath, p.dialTimeout)
		if err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
				// Its listening socket is gone: the process is dead or dying, and its
				// reaping is a moment away. Until then, send nothing more its way.
				p.mu.Lock()
				s.member.unreachable = true
				p.mu.Unlock()
			}
			lease.Release(false)
			return nil, fmt.Errorf("connect to worker %d: %w", s.member.w.ID, err)
		}
		var src io.Reader = c
		raw, ok := rawio.New(c)
		if ok {
			src = raw
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

// takeLocked picks a free slot of the least-loaded accepting worker, or nil. A worker on
// its way out (retiring, or past its request limit) serves only when no other one can: it
// is kept accepting only so that capacity does not drop before its replacement is ready.
// Among equally good workers the turn goes round (see pick).
func (p *Pool) takeLocked() *slot {
	at := pick(p.members, p.nextPick)
	if at < 0 {
		return nil
	}
	p.nextPick = at + 1
	return p.members[at].takeSlotLocked()
}

// pick returns the index of the worker that should get the next request, scanning from
// start round the list so that ties go to the first one at or after start; -1 when none
// can take it.
func pick(members []*member, start int) int {
	best := -1
	for i := range members {
		at := (start + i) % len(members)
		m := members[at]
		if !m.takesRequestsLocked() || len(m.free) == 0 {
			continue
		}
		if best < 0 || better(m, members[best]) {
			best = at
		}
	}
	return best
}

// better reports whether a should get the next request rather than b.
func better(a, b *member) bool {
	if a.leavingLocked() != b.leavingLocked() {
		return !a.leavingLocked()
	}
	return a.inflight < b.inflight
}

// giveBack returns a slot handed to a waiter that gave up before taking it.
func (p *Pool) giveBack(s *slot) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s.member.requests--
	p.freeSlotLocked(s)
}

// freeSlotLocked hands a slot no request holds to the oldest waiter, or frees it.
func (p *Pool) freeSlotLocked(s *slot) {
	m := s.member
	s.leader = nil
	if m.takesRequestsLocked() && p.waiters.len() > 0 {
		// Hand the slot straight to the oldest waiter: it stays in use, the counts stay.
		next := p.waiters.pop()
		m.requests++
		next.ch <- grant{slot: s}
		return
	}
	m.returnSlotLocked(s)
	p.afterReleaseLocked(m)
}

func (p *Pool) afterReleaseLocked(m *member) {
	if m.w.State() == Draining && m.inflight == 0 && p.notify != nil {
		p.notify()
	}
}

// serveWaiters hands free slots to waiting requests, after a worker became ready.
func (p *Pool) serveWaiters() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.waiters.len() > 0 {
		s := p.takeLocked()
		if s == nil {
			return
		}
		next := p.waiters.pop()
		next.ch <- grant{slot: s}
	}
}

// add puts a new (starting) worker's record in the pool.
func (p *Pool) add(m *member) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.members = append(p.members, m)
}

// remove drops a reaped worker's record. Its free connections close; the busy ones are shut
// down, so that the requests still holding them read EOF at once and fail (or, never
// started behind one that broke, go elsewhere), and their release closes what is left. A
// child the worker forked may hold the worker's end of every connection: the master cannot
// wait for EOF from the other side.
func (p *Pool) remove(m *member) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m.removed = true
	if m.mux != nil {
		// Its streams fail at once, not when the kernel says so: a child the worker forked
		// may hold its end. The link's reader frees their slots.
		go m.mux.close(fmt.Errorf("%w: worker %d exited", ErrLinkBroken, m.w.ID))
	}
	for _, s := range m.free {
		s.closeConn()
	}
	for _, s := range m.slots {
		if c, ok := s.conn.(*net.UnixConn); ok && s.leader != nil {
			_ = c.CloseRead()
			_ = c.CloseWrite()
		}
	}
	for i, x := range p.members {
		if x == m {
			p.members = append(p.members[:i], p.members[i+1:]...)
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

// setLeaving marks a worker as on its way out (or back in, after a failed reload): it then
// gets requests only when no other worker can.
func (p *Pool) setLeaving(m *member, leaving bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m.leaving = leaving
}

// requestLimitReached reports whether a worker served its --max-requests.
func (p *Pool) requestLimitReached(m *member) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return m.requestLimit > 0 && m.requests >= m.requestLimit
}

// servedAny reports whether the worker gave at least one response in full.
func (p *Pool) servedAny(m *member) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return m.served > 0
}

// idle reports whether the worker holds no request.
func (p *Pool) idle(m *member) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return m.inflight == 0
}

// WorkerInfo describes a worker for status pages, metrics and observers.
type WorkerInfo struct {
	ID         int
	Slot       int // see Worker.Slot
	Pid        int
	Generation int
	State      State
	// Busy: ready, but every slot carries a request (shown as "busy").
	Busy     bool
	InFlight int
	Requests uint64
	Started  time.Time        // when the process was spawned
	Current  []CurrentRequest // the requests it serves now, one per busy slot
	// Slots is how many requests it serves at once; Framed says they are streams on the
	// framed link (an asgi worker) rather than uwsgi connections.
	Slots  int
	Framed bool
}

// Shown is the state as status pages name it: "busy" for a ready worker with no free slot.
func (i WorkerInfo) Shown() string {
	if i.Busy {
		return "busy"
	}
	return i.State.String()
}

func (m *member) infoLocked() WorkerInfo {
	w := m.w
	st := w.State()
	info := WorkerInfo{ID: w.ID, Slot: w.Slot, Pid: w.Pid, Generation: w.Generation, State: st, Busy: st == Ready && len(m.free) == 0,
		InFlight: m.inflight, Requests: m.requests, Started: w.startedAt, Slots: len(m.slots), Framed: m.framed}
	for _, s := range m.slots {
		if cur := s.current.Load(); cur != nil {
			info.Current = append(info.Current, *cur)
		}
	}
	return info
}

// Workers returns a snapshot of the pool's workers.
func (p *Pool) Workers() []WorkerInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]WorkerInfo, 0, len(p.members))
	for _, m := range p.members {
		out = append(out, m.infoLocked())
	}
	return out
}

func (p *Pool) info(m *member) WorkerInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	return m.infoLocked()
}

// setPid records a worker's pid learnt after its spawn (the loop alone writes it).
func (p *Pool) setPid(m *member, pid int) {
	p.mu.Lock()
	m.w.Pid = pid
	p.mu.Unlock()
}

// QueueLen is the number of requests waiting for a slot.
func (p *Pool) QueueLen() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waiters.len()
}
