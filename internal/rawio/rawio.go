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
// A Conn is used by one goroutine at a time, as a connection serving one request at a
// time is. It imports nothing of herd's.
package rawio

import (
	"io"
	"net"
	"os"
	"syscall"
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
}

// New wraps c; ok is false when c has no file descriptor to use (a TLS connection, a pipe):
// then plain c.Read and c.Write are the way.
func New(c net.Conn) (*Conn, bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, false
	}
	return &Conn{Conn: c, rc: rc}, true
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
	var n int
	var opErr error
	unwritten := false
	if len(c.pending) > 0 {
		bufs := c.takePending()
		defer clear(bufs)
		first := true
		err := c.rc.Read(func(fd uintptr) bool {
			if first {
				first = false
				done, err := writevOnce(fd, &bufs)
				switch {
				case err != nil:
					opErr = wrap("write", err)
					return true
				case !done:
					unwritten = true // the peer's buffer is full: finish with a waiting write
					return true
				}
				if c.AfterPending != nil {
					c.AfterPending()
				}
				return false // all out: now wait for the answer
			}
			return readOnce(fd, p, &n, &opErr)
		})
		if opErr == nil && err != nil {
			opErr = err
		}
		if opErr != nil || !unwritten {
			return n, opErr
		}
		if err := c.writev(bufs); err != nil {
			return 0, err
		}
		if c.AfterPending != nil {
			c.AfterPending()
		}
	}
	err := c.rc.Read(func(fd uintptr) bool { return readOnce(fd, p, &n, &opErr) })
	if opErr == nil && err != nil {
		opErr = err
	}
	return n, opErr
}

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
	bufs := [][]byte{p}
	if err := c.writev(bufs); err != nil {
		return len(p) - remaining(bufs), err
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

func (c *Conn) writev(bufs [][]byte) error {
	var opErr error
	err := c.rc.Write(func(fd uintptr) bool {
		done, err := writevOnce(fd, &bufs)
		if err != nil {
			opErr = wrap("write", err)
			return true
		}
		return done
	})
	if opErr == nil && err != nil {
		opErr = err
	}
	return opErr
}

// maxIovecs bounds one writev's vector; the rest goes in the next call.
const maxIovecs = 16

// writevOnce writes what the socket takes now and advances *bufs past it. done is true
// when everything went out; false with a nil error means the socket is full (EAGAIN).
func writevOnce(fd uintptr, bufs *[][]byte) (done bool, err error) {
	for {
		for len(*bufs) > 0 && len((*bufs)[0]) == 0 {
			*bufs = (*bufs)[1:]
		}
		if len(*bufs) == 0 {
			return true, nil
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
			return false, nil
		default:
			return false, e
		}
		advance(bufs, int(r))
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
	var sent int64
	var opErr error
	cerr := src.Control(func(sfd uintptr) {
		werr := c.rc.Write(func(dfd uintptr) bool {
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
					return false
				default:
					opErr = wrap("sendfile", e)
					return true
				}
			}
			return true
		})
		if opErr == nil {
			opErr = werr
		}
	})
	if opErr == nil {
		opErr = cerr
	}
	return sent, opErr
}
