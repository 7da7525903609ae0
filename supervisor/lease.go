package supervisor

import (
	"bufio"
	"errors"
	"io"
	"net"
	"time"

	"github.com/herd-server/herd/internal/rawio"
)

// Lease is a slot held by one request, from its dispatch until its answer is read: the
// proxy's Lease. Release must be called exactly once.
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

// WorkerID names the worker that serves the request, for logs.
func (l *Lease) WorkerID() int { return l.slot.member.w.ID }

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

// Send sends the request (its uwsgi packet, then a body held in memory or one read from a
// file), and returns once the worker's answer to it is next on the connection: at once for
// a request that has the connection to itself; for one sent behind another (pipelining),
// once the request ahead is done. ErrBehindLost means it never reached the worker.
//
// A request with no file body goes out with the first read of its answer, in the same poll
// (see internal/rawio): one system call less than a write, then a read that finds nothing
// yet. A request pipelined behind another, or one whose connection has no raw form, is
// written at once instead.
func (l *Lease) Send(packet, mem []byte, file io.Reader) error {
	if file == nil && l.raw != nil {
		if l.behind == nil {
			l.slot.queuedBy = l
			l.raw.SetPending(packet, mem)
			return nil
		}
		l.beginWrite()
		if l.pool.isLost(l) {
			l.sendErr = ErrBehindLost
		} else {
			l.sendErr = l.raw.Writev(packet, mem)
		}
		l.written()
		return l.waitTurn()
	}
	l.beginWrite()
	err := writeRequest(l.conn, packet, mem, file)
	l.written()
	if err != nil {
		return err
	}
	return l.waitTurn()
}

// writeRequest writes the packet and the body on a connection without a raw form.
func writeRequest(conn net.Conn, packet, mem []byte, file io.Reader) error {
	switch {
	case file != nil:
		if _, err := conn.Write(packet); err != nil {
			return err
		}
		_, err := io.Copy(conn, file)
		return err
	case len(mem) > 0:
		bufs := net.Buffers{packet, mem}
		_, err := bufs.WriteTo(conn)
		return err
	default:
		_, err := conn.Write(packet)
		return err
	}
}

// Reader reads the worker's answers on this connection. It outlives the request: bytes it
// buffered belong to the connection, not to one answer.
func (l *Lease) Reader() *bufio.Reader { return l.reader }

// ConnBroke says the worker connection failed under the request (it read EOF, a reset or
// its deadline), before Release(false): a request pipelined behind it then provably never
// started (a worker serves its connection's requests in order) and is sent elsewhere.
// Without it, a request behind an abandoned one fails rather than risk running twice.
func (l *Lease) ConnBroke() { l.connBroke = true }

// Followed reports whether a request was sent (or half-sent) behind this one: the bytes
// after its answer are that request's, not a worker's excess, and a reset of the
// connection may be due to that request's unread bytes rather than this one's.
func (l *Lease) Followed() bool {
	l.pool.mu.Lock()
	defer l.pool.mu.Unlock()
	return l.slot.leader == l && (l.slot.follower != nil || l.slot.poisoned)
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
	l.written()
	overran := !reusable && !l.deadline.IsZero() && !time.Now().Before(l.deadline)
	l.pool.releaseLease(l, reusable, overran)
}

// beginWrite waits until the request may be written on the connection: at once for a
// request that has the connection to itself, after the request ahead for a follower.
func (l *Lease) beginWrite() {
	if l.behind != nil && !l.began {
		<-l.prev
		l.pool.mu.Lock()
		l.began = true
		l.pool.mu.Unlock()
	}
}

// written says the request is out (or failed to go): the one behind may write its own.
func (l *Lease) written() {
	if !l.sentClosed {
		l.sentClosed = true
		close(l.sent)
	}
}

// waitTurn waits until the worker's answer to this request is next on the connection.
func (l *Lease) waitTurn() error {
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
	for i := range p.members {
		m := p.members[(p.nextPick+i)%len(p.members)]
		if !p.canFollowLocked(m) {
			continue
		}
		for _, s := range m.slots {
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

// canFollowLocked says whether m may be sent a request behind the one it serves.
func (p *Pool) canFollowLocked(m *member) bool {
	return m.takesRequestsLocked() && !m.leavingLocked() && m.served > 0 && m.serviceAvg <= pipelineMaxService
}

// followBehindLocked makes the lease of a request sent behind s's leader.
func (p *Pool) followBehindLocked(s *slot) *Lease {
	m := s.member
	f := &Lease{pool: p, slot: s, behind: make(chan struct{}), conn: s.conn, raw: s.raw, reader: s.reader,
		sent: make(chan struct{}), prev: s.leader.sent}
	s.follower = f
	m.inflight++
	m.requests++
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

// releaseLease ends a lease: a leader gives the connection to its follower or frees the
// slot; a follower that never got its turn leaves.
func (p *Pool) releaseLease(l *Lease, reusable, overran bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := l.slot
	m := s.member
	if overran {
		// Before the slot can go to a waiting request: the worker is hung.
		m.stuck = true
		if p.onOverrun != nil {
			p.onOverrun(m.w)
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
		m.inflight--
		p.afterReleaseLocked(m)
		return
	}
	l.slot.current.Store(nil)
	if reusable {
		m.served++
		// A moving average of the time the worker takes per request, for pipelining.
		m.serviceAvg += (time.Since(l.start) - m.serviceAvg) / 8
	}
	if m.requestLimit > 0 && m.requests >= m.requestLimit && !m.limitNoted && p.notify != nil {
		m.limitNoted = true
		p.notify()
	}
	if s.follower != nil {
		p.promoteFollowerLocked(l, reusable, overran)
		return
	}
	if st := m.w.State(); !reusable || s.poisoned || !st.accepting() && st != Draining {
		s.closeConn()
	}
	p.freeSlotLocked(s)
}

// promoteFollowerLocked hands the slot of leader l, done, to the request sent behind it.
func (p *Pool) promoteFollowerLocked(l *Lease, reusable, overran bool) {
	s := l.slot
	m := s.member
	f := s.follower
	s.follower = nil
	m.inflight--
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
	if f.promoted && p.waiters.len() > 0 && p.pipelining && p.canFollowLocked(m) {
		// Keep the worker's next request waiting on its connection while requests queue:
		// the oldest waiter goes behind the one just promoted.
		next := p.waiters.pop()
		next.ch <- grant{follower: p.followBehindLocked(s)}
	}
	p.afterReleaseLocked(m)
}
