package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/herd-server/herd/protocol"
)

// ErrLinkBroken: the framed link to the worker broke (the worker died, or broke the
// protocol) while the stream was open.
var ErrLinkBroken = errors.New("worker link broken")

// muxConn is the master's end of a multiplexed worker's framed link (docs/protocol.md, "The
// framed link"): one connection carrying a stream per request in flight. One reader
// goroutine demultiplexes the worker's frames into the streams; one writer goroutine sends
// what the streams queue, in batches. Both end when the connection closes (close, or the
// worker's end of it), which fails every open stream at once.
type muxConn struct {
	conn net.Conn
	// onOver is told of each stream the worker is done with once its lease was released
	// too: the pool frees its slot.
	onOver func(*Stream)

	mu      sync.Mutex
	streams map[uint32]*Stream
	nextID  uint32
	out     []byte // frames queued for the writer
	err     error  // why the link broke; nil while it works
	pongs   chan struct{}

	wake chan struct{} // the writer has frames to send
	done chan struct{} // closed when the link is broken
}

// dialMux connects to a framed worker's socket and starts the link's goroutines.
func dialMux(path string, timeout time.Duration, onOver func(*Stream)) (*muxConn, error) {
	c, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return nil, err
	}
	m := &muxConn{conn: c, onOver: onOver, streams: map[uint32]*Stream{},
		wake: make(chan struct{}, 1), done: make(chan struct{}), pongs: make(chan struct{}, 1)}
	go m.readLoop()
	go m.writeLoop()
	return m, nil
}

// close breaks the link: every stream on it fails. Harmless twice.
func (m *muxConn) close(why error) {
	m.mu.Lock()
	if m.err != nil {
		m.mu.Unlock()
		return
	}
	m.err = why
	streams := m.streams
	m.streams = map[uint32]*Stream{}
	close(m.done)
	m.mu.Unlock()
	_ = m.conn.Close()
	for _, s := range streams {
		s.fail()
	}
}

func (m *muxConn) broken() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err != nil
}

// open starts a new stream on the link.
func (m *muxConn) open(lease *Lease) (*Stream, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return nil, m.err
	}
	m.nextID++
	if m.nextID == 0 {
		m.nextID = 1
	}
	s := &Stream{mux: m, id: m.nextID, lease: lease, sendCredit: protocol.InitialWindow,
		signal: make(chan struct{}, 1), credit: make(chan struct{}, 1)}
	m.streams[s.id] = s
	return s, nil
}

// queueLocked appends a frame for the writer.
func (m *muxConn) queueLocked(t protocol.FrameType, flags uint8, id uint32, payload []byte) {
	wasEmpty := len(m.out) == 0
	m.out = protocol.AppendFrame(m.out, t, flags, id, payload)
	if wasEmpty {
		select {
		case m.wake <- struct{}{}:
		default:
		}
	}
}

func (m *muxConn) writeLoop() {
	var batch []byte
	for {
		select {
		case <-m.wake:
		case <-m.done:
			return
		}
		m.mu.Lock()
		batch, m.out = m.out, batch[:0]
		m.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		if _, err := m.conn.Write(batch); err != nil {
			m.close(fmt.Errorf("%w: write: %w", ErrLinkBroken, err))
			return
		}
		if cap(batch) > 1<<20 {
			batch = nil // a burst's buffer is not kept
		}
	}
}

func (m *muxConn) readLoop() {
	br := bufio.NewReaderSize(m.conn, 64<<10)
	var hdr [protocol.FrameHeaderSize]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			m.close(fmt.Errorf("%w: %w", ErrLinkBroken, err))
			return
		}
		f, n, err := protocol.ParseFrameHeader(hdr[:])
		if err == nil && !fromWorker(f.Type) {
			err = fmt.Errorf("%w: %s from a worker", protocol.ErrFrameType, f.Type)
		}
		if err != nil {
			m.close(fmt.Errorf("%w: %w", ErrLinkBroken, err))
			return
		}
		if n > 0 {
			f.Payload = make([]byte, n)
			if _, err := io.ReadFull(br, f.Payload); err != nil {
				m.close(fmt.Errorf("%w: %w", ErrLinkBroken, err))
				return
			}
		}
		if err := m.deliver(f); err != nil {
			m.close(fmt.Errorf("%w: %w", ErrLinkBroken, err))
			return
		}
	}
}

func fromWorker(t protocol.FrameType) bool {
	switch t {
	case protocol.FrameRequest, protocol.FrameBody, protocol.FrameDisconnect, protocol.FrameWSConnect, protocol.FramePing:
		return false
	}
	return true
}

// deliver hands a frame from the worker to its stream.
func (m *muxConn) deliver(f protocol.Frame) error {
	if f.Type == protocol.FramePong {
		select {
		case m.pongs <- struct{}{}:
		default:
		}
		return nil
	}
	m.mu.Lock()
	s := m.streams[f.Stream]
	if s == nil {
		m.mu.Unlock()
		return nil // a stream over already: its late frames go nowhere
	}
	freed, err := s.takeLocked(f)
	if freed {
		delete(m.streams, s.id)
	}
	m.mu.Unlock()
	if freed {
		m.onOver(s)
	}
	return err
}

// probe asks the worker's loop to answer a PING, and calls stuck when it has not within
// wait: a loop that cannot answer is blocked (sync code in an async app), and no timeout of
// its tasks will end.
func (m *muxConn) probe(wait time.Duration, stuck func()) {
	select {
	case <-m.pongs: // an old answer
	default:
	}
	m.mu.Lock()
	if m.err == nil {
		m.queueLocked(protocol.FramePing, 0, 0, nil)
	}
	m.mu.Unlock()
	go func() { // ends within wait, or with the link
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-m.pongs:
		case <-m.done:
		case <-t.C:
			stuck()
		}
	}()
}

// Stream is one request on a framed link, held by its lease: what the proxy sends and
// receives of it. Its fields are guarded by the link's mutex.
type Stream struct {
	mux   *muxConn
	id    uint32
	lease *Lease

	inbox      []protocol.Frame // frames from the worker not taken yet
	signal     chan struct{}    // for Receive: a frame came, or the end
	credit     chan struct{}    // for Send: credit came, or the end
	sendCredit int              // data bytes we may still send
	owed       int              // data bytes taken by the proxy, not granted back yet
	last       int              // data bytes of the frame Receive returned last
	started    bool             // STARTED came
	over       bool             // the worker sent its last frame (or the link broke)
	released   bool             // the lease was given back
	failed     bool             // the link broke while the stream was open
}

// recvCredit is how many data bytes the worker may have unconsumed on a stream.
const recvCredit = protocol.InitialWindow

// takeLocked queues a frame for the proxy; freed says the stream is done for both sides.
func (s *Stream) takeLocked(f protocol.Frame) (freed bool, err error) {
	switch f.Type {
	case protocol.FrameStarted:
		s.started = true
		return false, nil
	case protocol.FrameWindow:
		n, err := protocol.DecodeWindow(f.Payload)
		if err != nil {
			return false, err
		}
		if s.sendCredit += int(n); s.sendCredit > 64*protocol.MaxFramePayload {
			return false, fmt.Errorf("stream %d: credit past 64 MiB", s.id)
		}
		wake(s.credit)
		return false, nil
	}
	if s.over {
		return false, nil
	}
	if f.Type.IsData() {
		pending := s.owed + s.last
		for _, q := range s.inbox {
			if q.Type.IsData() {
				pending += len(q.Payload)
			}
		}
		if pending+len(f.Payload) > recvCredit {
			return false, fmt.Errorf("stream %d: the worker sent past its credit", s.id)
		}
	}
	s.over = isFinal(f)
	if !s.released {
		s.inbox = append(s.inbox, f)
		s.notify()
	}
	return s.over && s.released, nil
}

// isFinal: after this frame the worker sends nothing more on the stream.
func isFinal(f protocol.Frame) bool {
	switch f.Type {
	case protocol.FrameEnd, protocol.FrameSendFile:
		return true
	case protocol.FrameResponseStart, protocol.FrameResponseBody:
		return f.Flags&protocol.FlagEnd != 0
	}
	return false
}

func (s *Stream) notify() { wake(s.signal) }

func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// fail is the link's break, as the stream sees it.
func (s *Stream) fail() {
	s.mux.mu.Lock()
	s.failed = true
	wasOver := s.over
	s.over = true
	released := s.released
	s.notify()
	wake(s.credit)
	s.mux.mu.Unlock()
	if released && !wasOver {
		s.mux.onOver(s)
	}
}

// Started reports whether the worker said it has the request: a stream that failed before
// it was never begun, and may go to another worker.
func (s *Stream) Started() bool {
	s.mux.mu.Lock()
	defer s.mux.mu.Unlock()
	return s.started
}

// Send queues a frame of the stream for the worker. A data frame waits for the worker's
// credit and is split to fit it (a body at any byte, a WebSocket message with FlagMore),
// until ctx ends or the stream does.
func (s *Stream) Send(ctx context.Context, t protocol.FrameType, flags uint8, payload []byte) error {
	m := s.mux
	if !t.IsData() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if err := s.usableLocked(); err != nil {
			return err
		}
		m.queueLocked(t, flags, s.id, payload)
		return nil
	}
	partial := flags &^ protocol.FlagEnd
	if t == protocol.FrameWSText || t == protocol.FrameWSBinary {
		partial = protocol.FlagMore
	}
	for {
		m.mu.Lock()
		if err := s.usableLocked(); err != nil {
			m.mu.Unlock()
			return err
		}
		if n := min(s.sendCredit, protocol.MaxFramePayload); n > 0 || len(payload) == 0 {
			if len(payload) <= n {
				s.sendCredit -= len(payload)
				m.queueLocked(t, flags, s.id, payload)
				m.mu.Unlock()
				return nil
			}
			s.sendCredit -= n
			m.queueLocked(t, partial, s.id, payload[:n])
			payload = payload[n:]
		}
		m.mu.Unlock()
		if err := s.awaitCredit(ctx); err != nil {
			return err
		}
	}
}

func (s *Stream) usableLocked() error {
	switch {
	case s.failed:
		return s.mux.err
	case s.released:
		return errors.New("stream released")
	}
	return nil
}

// awaitCredit waits for credit (or the stream's end), ctx, or the request's deadline.
func (s *Stream) awaitCredit(ctx context.Context) error {
	var deadline <-chan time.Time
	if d := s.lease.deadline; !d.IsZero() {
		t := time.NewTimer(time.Until(d))
		defer t.Stop()
		deadline = t.C
	}
	select {
	case <-s.credit:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-deadline:
		return os.ErrDeadlineExceeded
	}
}

// Receive returns the next frame the worker sent on the stream, waiting up to patience for
// one (ok=false when none came in that time). It fails when ctx ends, past the request's
// deadline (os.ErrDeadlineExceeded) or when the link broke (ErrLinkBroken) before a final
// frame. A frame's payload is the caller's; data frames are credited back to the worker at
// the next call.
func (s *Stream) Receive(ctx context.Context, patience time.Duration) (protocol.Frame, bool, error) {
	m := s.mux
	var timer *time.Timer
	for {
		m.mu.Lock()
		s.owed += s.last
		s.last = 0
		if s.owed >= recvCredit/2 && !s.failed {
			m.queueLocked(protocol.FrameWindow, 0, s.id, protocol.AppendWindow(nil, uint32(s.owed)))
			s.owed = 0
		}
		if len(s.inbox) > 0 {
			f := s.inbox[0]
			s.inbox = s.inbox[1:]
			if f.Type.IsData() {
				s.last = len(f.Payload)
			}
			m.mu.Unlock()
			if timer != nil {
				timer.Stop()
			}
			return f, true, nil
		}
		failed := s.failed
		err := m.err
		m.mu.Unlock()
		if failed {
			return protocol.Frame{}, false, err
		}
		if timer == nil {
			timer = time.NewTimer(patience)
			defer timer.Stop()
		}
		if d := s.lease.deadline; !d.IsZero() && !time.Now().Before(d) {
			return protocol.Frame{}, false, os.ErrDeadlineExceeded
		}
		select {
		case <-s.signal:
		case <-ctx.Done():
			return protocol.Frame{}, false, ctx.Err()
		case <-timer.C:
			return protocol.Frame{}, false, nil
		}
	}
}

// release ends the proxy's side of the stream. A stream the worker is not done with gets
// DISCONNECT (reason: the request overran its deadline, or its client left) and keeps its
// slot until the worker ends it; freed says the slot can be freed now.
func (s *Stream) release(overran bool) (freed bool) {
	m := s.mux
	m.mu.Lock()
	defer m.mu.Unlock()
	s.released = true
	s.inbox = nil
	wake(s.credit) // a body still being sent stops
	if s.over {
		if !s.failed {
			delete(m.streams, s.id)
		}
		return true
	}
	reason := protocol.ReasonClientGone
	if overran {
		reason = protocol.ReasonTimeout
	}
	m.queueLocked(protocol.FrameDisconnect, 0, s.id, []byte{reason})
	return false
}
