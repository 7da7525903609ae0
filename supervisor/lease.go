package supervisor

import (
	"bufio"
	"io"
	"net"
	"time"

	"github.com/herd-server/herd/internal/rawio"
)

// Lease is a slot held by one request, from its dispatch until its answer is read: the
// proxy's Lease. Release must be called exactly once.
//
// A request is only ever sent to a free slot: never behind another request on a busy
// worker, where it would wait for that one however long it takes while another worker may
// be free, and be lost if that one killed the worker.
type Lease struct {
	pool     *Pool
	slot     *slot
	deadline time.Time // zero without --timeout
	released bool
	start    time.Time // when the worker was given this request

	// stream is the request's stream on a framed worker's link; nil on a uwsgi slot,
	// which uses the connection below.
	stream *Stream

	// The connection as it was when the lease got it.
	conn   net.Conn
	raw    *rawio.Conn
	reader *bufio.Reader
}

// WorkerID names the worker that serves the request, for logs.
func (l *Lease) WorkerID() int { return l.slot.member.w.ID }

// Describe tells the pool which request the slot carries, for status pages; since is when
// the request arrived.
func (l *Lease) Describe(method, uri string, since time.Time) {
	l.slot.current.Store(&CurrentRequest{Method: method, URI: uri, Since: since})
}

// Send sends the request: its uwsgi packet, then a body held in memory or one read from a
// file. A request with no file body goes out with the first read of its answer, in the same
// poll (see internal/rawio): one system call less than a write, then a read that finds
// nothing yet.
func (l *Lease) Send(packet, mem []byte, file io.Reader) error {
	if file == nil && l.raw != nil {
		l.raw.SetPending(packet, mem)
		return nil
	}
	switch {
	case file != nil:
		if _, err := l.conn.Write(packet); err != nil {
			return err
		}
		_, err := io.Copy(l.conn, file)
		return err
	case len(mem) > 0:
		bufs := net.Buffers{packet, mem}
		_, err := bufs.WriteTo(l.conn)
		return err
	default:
		_, err := l.conn.Write(packet)
		return err
	}
}

// Reader reads the worker's answers on this connection. It outlives the request: bytes it
// buffered belong to the connection, not to one answer.
func (l *Lease) Reader() *bufio.Reader { return l.reader }

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
	overran := !reusable && !l.deadline.IsZero() && !time.Now().Before(l.deadline)
	if l.stream != nil {
		l.pool.releaseStream(l, overran)
		return
	}
	l.pool.releaseLease(l, reusable, overran)
}

// releaseLease ends a lease and frees its slot (to the oldest waiter, if any).
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
	s.current.Store(nil)
	if reusable {
		m.served++
	}
	if m.requestLimit > 0 && m.requests >= m.requestLimit && !m.limitNoted && p.notify != nil {
		m.limitNoted = true
		p.notify()
	}
	if st := m.w.State(); !reusable || !st.accepting() && st != Draining {
		s.closeConn()
	}
	p.freeSlotLocked(s)
}
