package h1

import (
	"bytes"
	"net"
	"time"
)

// h2Preface opens every HTTP/2 connection (RFC 9113 3.4); with prior knowledge it is the
// first thing a cleartext client sends. Its first line is a request line ("PRI * HTTP/2.0")
// and the empty line after it ends a head, so h1 reads it as a head like any other, and
// refuses it (errH2PrefaceOnHTTP) unless the server hands such connections over (H2C).
var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// takeH2C is called when a plain connection's first head was HTTP/2's preface. It returns
// the connection to hand to the server's H2C, reading again first what h1 read of it
// already, or nil when it stays h1's to refuse: no H2C, a TLS connection (h2 comes by ALPN
// there), or not the whole preface.
func (c *conn) takeH2C() net.Conn {
	if c.srv.H2C == nil || c.tls != nil {
		return nil
	}
	// The head ended at the preface's empty line; its last six bytes may be on the way.
	for c.w-c.r < len(h2Preface) && bytes.HasPrefix(h2Preface, c.buf[c.r:c.w]) {
		if c.fill() != nil {
			return nil
		}
	}
	if !bytes.HasPrefix(c.buf[c.r:c.w], h2Preface) {
		return nil
	}
	// net/http times the HTTP/2 connection itself; the deadline of h1's first head would
	// end it.
	_ = c.nc.SetReadDeadline(time.Time{})
	return &replayConn{Conn: c.nc, read: bytes.Clone(c.buf[c.r:c.w])}
}

// replayConn is a connection handed over with the bytes h1 read from it already: they are
// read again first, so the new owner sees the connection from its first byte.
type replayConn struct {
	net.Conn
	read []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.read) > 0 {
		n := copy(p, c.read)
		c.read = c.read[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
