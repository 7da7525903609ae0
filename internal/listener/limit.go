package listener

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
)

// Limit bounds the connections open at once across every listener it wraps (--max-connections).
// At the limit the wrapped listeners stop calling accept(2): the excess waits in the kernel's
// listen backlog, costing the process no descriptor, no goroutine and no buffer, and is
// accepted as soon as an open connection closes. Refusing (accept and close) would cost a
// descriptor and a syscall per attempt and hand a flood a busy loop; waiting costs nothing.
type Limit struct {
	slots chan struct{}
	// OnFull, when set, is called each time an accept finds every slot taken, before it
	// waits. It must not block.
	OnFull func()
}

// NewLimit returns a Limit of n connections (n >= 1).
func NewLimit(n int) *Limit {
	return &Limit{slots: make(chan struct{}, max(n, 1))}
}

// Max is the number of connections the Limit allows.
func (l *Limit) Max() int { return cap(l.slots) }

// Open is the number of connections accepted through the Limit and not yet closed.
func (l *Limit) Open() int { return len(l.slots) }

// Wrap returns ln bounded by l. Closing the returned listener closes ln and ends an Accept
// waiting for a free slot.
func (l *Limit) Wrap(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, limit: l, done: make(chan struct{})}
}

type limitListener struct {
	net.Listener
	limit     *Limit
	done      chan struct{}
	closeOnce sync.Once
}

// Accept takes a slot, then a connection: the order keeps a connection the process cannot
// take in the backlog rather than in the process.
func (ln *limitListener) Accept() (net.Conn, error) {
	if !ln.acquire() {
		return nil, &net.OpError{Op: "accept", Net: ln.Addr().Network(), Addr: ln.Addr(), Err: net.ErrClosed}
	}
	c, err := ln.Listener.Accept()
	if err != nil {
		ln.limit.release()
		return nil, err
	}
	return &limitedConn{Conn: c, limit: ln.limit}, nil
}

func (ln *limitListener) acquire() bool {
	select {
	case <-ln.done:
		return false
	default:
	}
	select {
	case ln.limit.slots <- struct{}{}:
		return true
	default:
	}
	if ln.limit.OnFull != nil {
		ln.limit.OnFull()
	}
	select {
	case ln.limit.slots <- struct{}{}:
		return true
	case <-ln.done:
		return false
	}
}

func (ln *limitListener) Close() error {
	ln.closeOnce.Do(func() { close(ln.done) })
	return ln.Listener.Close()
}

func (l *Limit) release() { <-l.slots }

// limitedConn gives its slot back on its first Close.
type limitedConn struct {
	net.Conn
	limit    *Limit
	released atomic.Bool
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	if c.released.CompareAndSwap(false, true) {
		c.limit.release()
	}
	return err
}

// CloseWrite half-closes a TCP or Unix connection, as net/http does after an error
// response; the wrapper must not hide it.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// SetLinger lets the uwsgi front end reset a connection whose response broke (a TCP RST
// tells nginx the body is not whole).
func (c *limitedConn) SetLinger(sec int) error {
	if sl, ok := c.Conn.(interface{ SetLinger(int) error }); ok {
		return sl.SetLinger(sec)
	}
	return nil
}

// ReadFrom passes the connection's own ReadFrom on: net/http sends a file body through it
// with sendfile (--static).
func (c *limitedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// SyscallConn passes the connection's descriptor on: herd's HTTP/1 server reads and writes
// it with raw system calls (internal/rawio), which this wrapper must not hide.
func (c *limitedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.New("connection has no descriptor")
}
