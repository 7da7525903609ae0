package supervisor

import (
	"errors"
	"fmt"
	"syscall"
	"time"
)

// The pool's side of framed workers: a slot of such a worker is a stream on its one link,
// dialed by the first request that needs it; the slot is free again once both the request
// (its lease) and the worker (its last frame) are done with the stream.

// Stream is the request's stream when its worker speaks the framed link, nil otherwise.
func (l *Lease) Stream() *Stream { return l.stream }

// NoDeadline lifts --timeout from the stream: a WebSocket lives as long as its client and
// app want. Called before the stream is used from another goroutine.
func (s *Stream) NoDeadline() { s.lease.deadline = time.Time{} }

// setFramed makes a starting worker's slots streams on the framed link: slots of them, as
// its ready message said.
func (p *Pool) setFramed(m *member, slots int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m.framed = true
	m.slots, m.free = nil, nil
	for range max(slots, 1) {
		m.slots = append(m.slots, &slot{member: m})
	}
	m.free = append(m.free, m.slots...)
}

// connectStream opens the lease's stream on its worker's link, dialing the link first if
// it has none (or a broken one).
func (p *Pool) connectStream(lease *Lease) (*Lease, error) {
	m := lease.slot.member
	mux, err := p.memberLink(m)
	if err == nil {
		lease.stream, err = mux.open(lease)
	}
	if err != nil {
		lease.Release(false)
		return nil, fmt.Errorf("connect to worker %d: %w", m.w.ID, err)
	}
	if p.requestTimeout > 0 {
		lease.deadline = lease.start.Add(p.requestTimeout)
	}
	return lease, nil
}

// memberLink returns the worker's link, dialing it when there is none that works.
func (p *Pool) memberLink(m *member) (*muxConn, error) {
	m.dialMu.Lock()
	defer m.dialMu.Unlock()
	p.mu.Lock()
	mux := m.mux
	p.mu.Unlock()
	if mux != nil && !mux.broken() {
		return mux, nil
	}
	mux, err := dialMux(m.w.SocketPath, p.dialTimeout, p.streamOver)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			p.mu.Lock()
			m.unreachable = true
			p.mu.Unlock()
		}
		return nil, err
	}
	p.mu.Lock()
	removed := m.removed
	if !removed {
		m.mux = mux
	}
	p.mu.Unlock()
	if removed {
		mux.close(fmt.Errorf("%w: worker %d exited", ErrLinkBroken, m.w.ID))
		return nil, ErrLinkBroken
	}
	return mux, nil
}

// releaseStream ends the request's side of its stream. Its slot is free at once when the
// worker is done with the stream too, else once it is (streamOver). A request that overran
// --timeout has its task cancelled by the worker, and the worker's loop is probed: one
// that does not answer is blocked, and the supervisor kills it.
func (p *Pool) releaseStream(l *Lease, overran bool) {
	l.slot.current.Store(nil)
	freed := l.stream.release(overran)
	if overran {
		m := l.slot.member
		l.stream.mux.probe(timeoutKillGrace, func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			m.stuck = true
			if p.onOverrun != nil {
				p.onOverrun(m.w)
			}
		})
	}
	if freed {
		p.streamOver(l.stream)
	}
}

// streamOver frees the slot of a stream both sides are done with.
func (p *Pool) streamOver(s *Stream) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := s.lease
	m := l.slot.member
	s.mux.mu.Lock()
	clean := !s.failed
	s.mux.mu.Unlock()
	if clean {
		m.served++
	}
	if m.requestLimit > 0 && m.requests >= m.requestLimit && !m.limitNoted && p.notify != nil {
		m.limitNoted = true
		p.notify()
	}
	p.freeSlotLocked(l.slot)
}
