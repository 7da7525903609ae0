package listener

import (
	"bufio"
	"io"
	"net"
	"sync"
	"time"
)

// ProxyListener requires a PROXY header (v1 or v2) at the start of every connection it
// accepts. The header is read by the connection's first Read, RemoteAddr or LocalAddr, in
// the goroutine that serves it, so a slow or silent client never holds up Accept.
type ProxyListener struct {
	net.Listener
	// HeaderTimeout bounds how long a connection may take to send its header.
	HeaderTimeout time.Duration
	// OnError, when set, hears about every connection refused for a missing or bad header.
	OnError func(remote net.Addr, err error)
}

// Accept returns the next connection, wrapped so that its addresses are the header's.
func (l *ProxyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &proxyConn{Conn: c, timeout: l.HeaderTimeout, onError: l.OnError}, nil
}

// proxyConn is a connection whose first bytes are a PROXY header. A connection without a
// valid one is closed, and every Read on it returns the reason.
type proxyConn struct {
	net.Conn
	timeout time.Duration
	onError func(net.Addr, error)

	once   sync.Once
	reader *bufio.Reader // holds what was read past the header
	header Header
	err    error
}

// ReadFrom passes the connection's own ReadFrom on, so that a file body still goes out with
// sendfile (net/http looks for it on the connection); the header concerns reads only.
func (c *proxyConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// headerBufferSize holds a v1 line with room to spare; v2 addresses are read through it.
const headerBufferSize = 256

func (c *proxyConn) readHeader() {
	c.once.Do(func() {
		if c.timeout > 0 {
			_ = c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
		}
		c.reader = bufio.NewReaderSize(c.Conn, headerBufferSize)
		c.header, c.err = ReadHeader(c.reader)
		if c.timeout > 0 {
			_ = c.Conn.SetReadDeadline(time.Time{})
		}
		if c.err != nil {
			if c.onError != nil {
				c.onError(c.Conn.RemoteAddr(), c.err)
			}
			_ = c.Conn.Close()
		}
	})
}

func (c *proxyConn) Read(p []byte) (int, error) {
	c.readHeader()
	if c.err != nil {
		return 0, c.err
	}
	if c.reader.Buffered() > 0 {
		return c.reader.Read(p)
	}
	return c.Conn.Read(p)
}

// RemoteAddr is the client's address as the balancer saw it.
func (c *proxyConn) RemoteAddr() net.Addr {
	c.readHeader()
	if c.header.Source != nil {
		return c.header.Source
	}
	return c.Conn.RemoteAddr()
}

// LocalAddr is the address the client connected to, on the balancer.
func (c *proxyConn) LocalAddr() net.Addr {
	c.readHeader()
	if c.header.Dest != nil {
		return c.header.Dest
	}
	return c.Conn.LocalAddr()
}
