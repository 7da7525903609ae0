// Package rawio reads and writes a socket with raw, non-blocking system calls on Go's
// poller, for the request path of the master.
//
// Why not net.Conn's Read and Write: each of them goes through the runtime's
// entersyscall/exitsyscall, and on a master that keeps going idle between requests (it waits
// for Python most of the time) every such syscall wakes the runtime's sysmon thread, which
// then polls every 20 us for a millisecond. Measured on the 2-core machine with wrk and two
// hello workers, sysmon's sleeps were 12-15% of the master's CPU. A non-blocking socket
// never blocks in read or write, so the raw form is safe, and the poller still does the
// waiting (deadlines included) through syscall.RawConn.
//
// The second saving is the write-then-wait of a request and its answer: SetPending queues
// bytes that the next Read writes inside the poller's read callback, after the poller was
// armed and before the first read attempt. The usual Write-then-Read makes a read that
// finds nothing yet (EAGAIN) before waiting; this one waits first, and the answer cannot be
// missed because the poller was armed before the write.
//
// A Conn is read by one goroutine at a time and written by one goroutine at a time (a read
// waiting for an answer may overlap the write of a request queued behind it, once
// AfterPending said the pending bytes are out). It imports nothing of herd's.
package rawio

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// Conn is a net.Conn with raw Read and Write. The embedded net.Conn still serves
// everything else (Close, deadlines, addresses).
type Conn struct {
	net.Conn
	rc syscall.RawConn
	// pending is written by the next Read before it waits for an answer; pendBuf is its
	// backing array, kept from one request to the next.
	pending, pendBuf [][]byte
	// AfterPending, when set, is called once pending bytes are all written.
	AfterPending func()
	// PeerMaySendFirst says the peer may have sent bytes (or closed its side) before the
	// pending ones reach it: an HTTP client that pipelines, or half-closes, as opposed to a
	// worker, which speaks only when spoken to. The read after the pending write is then
	// tried at once instead of waiting for the poller: readiness that came before Read began
	// was dropped when the poller was armed, and would never be reported again.
	PeerMaySendFirst bool
	// WriteTimeout, when set, bounds how long a write (Write, Writev, Flush, the pending
	// bytes of Read, SendFile) may go without progress toward the peer: one that stops
	// reading makes it fail with os.ErrDeadlineExceeded, one that reads slowly but steadily
	// does not. Progress is a partial write, or the peer taking bytes from the socket's
	// queue (see moveOn). Deadlines are set only while a write waits for room, and cleared
	// once it is done: a write that never waits costs none.
	WriteTimeout time.Duration
	// While a write waits: wArmed, a deadline of ours is set; wQueued is what the socket
	// held for the peer when last looked at, wProgress when progress was last seen.
	wArmed    bool
	wQueued   int
	wProgress time.Time

	// The state of the read and of the write in progress, and the callbacks RawConn runs,
	// bound once in New: a closure made per call escapes to the heap (it goes through an
	// interface), and with the variables it captures that was 8 allocations per request.
	rBuf               []byte
	rN                 int
	rErr               error
	rBufs              [][]byte // pending bytes the read writes first
	rFirst, rUnwritten bool
	readCB, pendingCB  func(fd uintptr) bool
	wBufs              [][]byte
	wErr               error
	wOne               [1][]byte
	writeCB            func(fd uintptr) bool
}

// New wraps c; ok is false when c has no file descriptor to use (a TLS connection, a pipe):
// then plain c.Read and c.Write are the way.
func New(c net.Conn) (*Conn, bool) {
	return fromConn(c, newConn)
}

// newConn is a Conn with its callbacks bound, for a connection still to be set.
func newConn() *Conn {
	conn := &Conn{}
	conn.readCB, conn.pendingCB, conn.writeCB = conn.readStep, conn.pendingStep, conn.writeStep
	return conn
}

// conns keeps Conns for Get: a connection per request (nginx's uwsgi_pass) made a Conn and
// bound its three callbacks every time.
var conns = sync.Pool{New: func() any { return newConn() }}

// Get is New with a Conn from a pool; Put gives it back once c is closed and no goroutine
// uses it any more.
func Get(c net.Conn) (*Conn, bool) {
	return fromConn(c, func() *Conn { return conns.Get().(*Conn) })
}

func fromConn(c net.Conn, alloc func() *Conn) (*Conn, bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, false
	}
	conn := alloc()
	conn.Conn, conn.rc = c, rc
	return conn, true
}

// Put returns a Conn from Get to the pool.
func Put(c *Conn) {
	readCB, pendingCB, writeCB := c.readCB, c.pendingCB, c.writeCB
	*c = Conn{readCB: readCB, pendingCB: pendingCB, writeCB: writeCB}
	conns.Put(c)
}

// SetPending queues bufs to be written by the next Read, before it waits for the peer's
// answer. The slices must stay untouched until that Read returns.
func (c *Conn) SetPending(bufs ...[]byte) {
	c.pending = append(c.pendBuf[:0], bufs...)
	c.pendBuf = c.pending
}

// HasPending reports whether queued bytes wait for the next Read.
func (c *Conn) HasPending() bool { return len(c.pending) > 0 }

// Flush writes the queued bytes now, for a caller that will not read next.
func (c *Conn) Flush() error {
	if len(c.pending) == 0 {
		return nil
	}
	bufs := c.takePending()
	err := c.writev(bufs)
	clear(bufs)
	if err == nil && c.AfterPending != nil {
		c.AfterPending()
	}
	return err
}

// takePending hands the queued bytes to the caller and empties the queue: c.pending is not
// touched again once AfterPending may have let another goroutine write on the connection.
func (c *Conn) takePending() [][]byte {
	bufs := c.pending
	c.pending = nil
	return bufs
}

// Read writes what is pending, then reads. io.EOF when the peer closed its side.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rBuf, c.rN, c.rErr = p, 0, nil
	defer func() { c.rBuf = nil }() // p is the caller's
	if len(c.pending) > 0 {
		c.rBufs = c.takePending()
		bufs := c.rBufs
		defer clear(bufs)
		c.rFirst, c.rUnwritten = true, false
		err := c.rc.Read(c.pendingCB)
		if c.rErr == nil && err != nil {
			c.rErr = err
		}
		if c.rErr != nil || !c.rUnwritten {
			return c.rN, c.rErr
		}
		if err := c.writev(c.rBufs); err != nil {
			return 0, err
		}
		if c.AfterPending != nil {
			c.AfterPending()
		}
	}
	err := c.rc.Read(c.readCB)
	if c.rErr == nil && err != nil {
		c.rErr = err
	}
	return c.rN, c.rErr
}

// pendingStep is Read's callback while bytes are pending: the first call writes them, the
// later ones read.
func (c *Conn) pendingStep(fd uintptr) bool {
	if !c.rFirst {
		return readOnce(fd, c.rBuf, &c.rN, &c.rErr)
	}
	c.rFirst = false
	done, _, err := writevOnce(fd, &c.rBufs)
	switch {
	case err != nil:
		c.rErr = wrap("write", err)
		return true
	case !done:
		c.rUnwritten = true // the peer's buffer is full: finish with a waiting write
		return true
	}
	if c.AfterPending != nil {
		c.AfterPending()
	}
	if c.PeerMaySendFirst {
		return readOnce(fd, c.rBuf, &c.rN, &c.rErr)
	}
	return false // all out: now wait for the answer, which cannot have come before
}

func (c *Conn) readStep(fd uintptr) bool { return readOnce(fd, c.rBuf, &c.rN, &c.rErr) }

// readOnce is one read attempt: false means "nothing yet, wait".
func readOnce(fd uintptr, p []byte, n *int, opErr *error) bool {
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case 0:
			*n = int(r)
			if r == 0 {
				*opErr = io.EOF
			}
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			*opErr = wrap("read", e)
			return true
		}
	}
}

// Write writes all of p, waiting for room as needed. Pending bytes go first.
func (c *Conn) Write(p []byte) (int, error) {
	if len(c.pending) > 0 {
		if err := c.Flush(); err != nil {
			return 0, err
		}
	}
	if len(p) == 0 {
		return 0, nil
	}
	c.wOne[0] = p
	err := c.writev(c.wOne[:])
	c.wOne[0] = nil
	if err != nil {
		return len(p) - remaining(c.wBufs), err
	}
	return len(p), nil
}

// Writev writes every buffer, in order, with as few system calls as the kernel allows.
func (c *Conn) Writev(bufs ...[]byte) error {
	if len(c.pending) > 0 {
		if err := c.Flush(); err != nil {
			return err
		}
	}
	return c.writev(bufs)
}

// writev writes bufs; on an error, c.wBufs holds what was not written.
func (c *Conn) writev(bufs [][]byte) error {
	c.wBufs, c.wErr = bufs, nil
	err := c.rc.Write(c.writeCB)
	for c.wErr == nil && c.moveOn(err) {
		err = c.rc.Write(c.writeCB)
	}
	c.disarm()
	if c.wErr == nil && err != nil {
		c.wErr = err
	}
	if c.wErr == nil {
		c.wBufs = nil
	}
	return c.wErr
}

func (c *Conn) writeStep(fd uintptr) bool {
	done, n, err := writevOnce(fd, &c.wBufs)
	if err != nil {
		c.wErr = wrap("write", err)
		return true
	}
	if !done {
		c.arm(fd, n > 0)
	}
	return done
}

// arm starts the clock before a wait for room: the first time, and again after a write
// that made progress. It runs inside RawConn.Write's callback, whose wait then honours the
// deadline it sets (setting a deadline takes no lock a write holds).
func (c *Conn) arm(fd uintptr, progressed bool) {
	if c.WriteTimeout <= 0 || c.wArmed && !progressed {
		return
	}
	c.wArmed = true
	c.wQueued, _ = outq(fd)
	c.wProgress = time.Now()
	_ = c.Conn.SetWriteDeadline(c.wProgress.Add(c.checkEvery()))
}

// checkEvery is how often a waiting write looks at the socket's queue: the peer may take
// bytes without the socket ever saying it has room again (the kernel waits for half of its
// send buffer to be free, megabytes on a fast link, which a client taking a few KiB a
// second frees in minutes), so its progress is looked for at the queue. A write is given
// up between WriteTimeout and an eighth more after the last progress.
func (c *Conn) checkEvery() time.Duration { return max(c.WriteTimeout/8, time.Millisecond) }

// moveOn is asked when a write failed: when it failed by arm's deadline, it looks at the
// socket's queue and says whether the write goes on (the deadline moved on) or is given
// up, WriteTimeout after the last progress.
func (c *Conn) moveOn(err error) bool {
	if !c.wArmed || !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	now := time.Now()
	q, ok := 0, false
	_ = c.rc.Control(func(fd uintptr) { q, ok = outq(fd) })
	if ok && q < c.wQueued {
		c.wQueued, c.wProgress = q, now
	}
	left := c.wProgress.Add(c.WriteTimeout).Sub(now)
	if left <= 0 {
		return false
	}
	_ = c.Conn.SetWriteDeadline(now.Add(min(left, c.checkEvery())))
	return true
}

// outq is how many bytes a socket holds that its peer has not taken: for TCP, sent and not
// acknowledged or not sent yet; for a Unix socket, queued and not read.
func outq(fd uintptr) (int, bool) {
	var n int32
	_, _, e := syscall.RawSyscall(syscall.SYS_IOCTL, fd, uintptr(syscall.TIOCOUTQ), uintptr(unsafe.Pointer(&n)))
	return int(n), e == 0
}

// disarm clears the deadline arm set: a deadline left behind would fail a later write.
func (c *Conn) disarm() {
	if c.wArmed {
		c.wArmed = false
		_ = c.Conn.SetWriteDeadline(time.Time{})
	}
}

// maxIovecs bounds one writev's vector; the rest goes in the next call.
const maxIovecs = 16

// writevOnce writes what the socket takes now and advances *bufs past it; n is how many
// bytes went. done is true when everything went out; false with a nil error means the
// socket is full (EAGAIN).
func writevOnce(fd uintptr, bufs *[][]byte) (done bool, n int, err error) {
	for {
		for len(*bufs) > 0 && len((*bufs)[0]) == 0 {
			*bufs = (*bufs)[1:]
		}
		if len(*bufs) == 0 {
			return true, n, nil
		}
		var iov [maxIovecs]syscall.Iovec
		cnt := 0
		for _, b := range *bufs {
			if cnt == maxIovecs {
				break
			}
			if len(b) == 0 {
				continue
			}
			iov[cnt].Base = &b[0]
			iov[cnt].SetLen(len(b))
			cnt++
		}
		var r uintptr
		var e syscall.Errno
		if cnt == 1 {
			b := (*bufs)[0]
			r, _, e = syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		} else {
			r, _, e = syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(cnt))
		}
		switch e {
		case 0:
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false, n, nil
		default:
			return false, n, e
		}
		advance(bufs, int(r))
		n += int(r)
	}
}

func advance(bufs *[][]byte, n int) {
	for n > 0 && len(*bufs) > 0 {
		b := (*bufs)[0]
		if n < len(b) {
			(*bufs)[0] = b[n:]
			return
		}
		n -= len(b)
		*bufs = (*bufs)[1:]
	}
}

func remaining(bufs [][]byte) int {
	n := 0
	for _, b := range bufs {
		n += len(b)
	}
	return n
}

// wrap gives a raw errno the shape net.Conn's errors have, so that errors.Is(err,
// syscall.EPIPE) and the like work as they do on a plain connection.
func wrap(op string, e error) error {
	return &net.OpError{Op: op, Net: "raw", Err: os.NewSyscallError(op, e)}
}

// PeerClosed reports whether the peer has closed the connection or reset it, without
// consuming anything it sent: one non-blocking peek. False when data waits (the peer is
// there) or when it cannot tell.
func (c *Conn) PeerClosed() bool {
	closed := false
	_ = c.rc.Control(func(fd uintptr) {
		var b [1]byte
		n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		closed = e == 0 && n == 0 || e == syscall.ECONNRESET
	})
	return closed
}

// SendFile sends up to n bytes of the file behind src, from its current offset, with
// sendfile(2), waiting for room as needed; it returns how many went (fewer at the file's
// end). The file's offset moves by as much, as a read would move it.
func (c *Conn) SendFile(src syscall.RawConn, n int64) (int64, error) {
	var sent, armedAt int64
	var opErr error
	cerr := src.Control(func(sfd uintptr) {
		defer c.disarm()
		step := func(dfd uintptr) bool {
			for sent < n {
				chunk := min(n-sent, 1<<30)
				r, _, e := syscall.RawSyscall6(syscall.SYS_SENDFILE, dfd, sfd, 0, uintptr(chunk), 0, 0)
				switch e {
				case 0:
					if r == 0 {
						return true // the file ended
					}
					sent += int64(r)
				case syscall.EINTR:
				case syscall.EAGAIN:
					c.arm(dfd, sent > armedAt)
					armedAt = sent
					return false
				default:
					opErr = wrap("sendfile", e)
					return true
				}
			}
			return true
		}
		werr := c.rc.Write(step)
		for opErr == nil && c.moveOn(werr) {
			werr = c.rc.Write(step)
		}
		if opErr == nil {
			opErr = werr
		}
	})
	if opErr == nil {
		opErr = cerr
	}
	return sent, opErr
}
