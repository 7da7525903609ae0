package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"time"
)

// hijackReadBuffer is the read buffer a hijacked connection's reader gets: a WebSocket
// library reads the connection through it for the socket's whole life, so an idle socket
// should not pin much.
const hijackReadBuffer = 2048

// ErrHijacked answers a second Hijack, or one after the response began.
var ErrHijacked = errors.New("h1: connection cannot be hijacked now")

// Hijack hands the connection over to the handler (http.Hijacker), for a WebSocket
// upgrade: the handler writes the rest itself and must close it. Bytes the client sent
// after the request head are read first from the returned reader. Once the handler
// returns, h1 neither writes to nor closes the connection; it no longer counts it for
// Shutdown and Close, but Shutdown still waits for the handler to return.
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c := w.c
	if c.hijacked || w.committed || c.handlerDone {
		return nil, nil, ErrHijacked
	}
	if c.raw != nil && c.raw.HasPending() {
		if err := c.raw.Flush(); err != nil {
			return nil, nil, err
		}
	}
	c.hijacked = true
	var src io.Reader = c.nc
	if c.r < c.w {
		early := append([]byte(nil), c.buf[c.r:c.w]...)
		src = io.MultiReader(bytes.NewReader(early), c.nc)
	}
	c.r, c.w = 0, 0
	// What a hijacked connection keeps of h1's, it keeps for its whole life: not the
	// buffers of heads and responses it will not use again.
	c.buf = nil
	w.out, w.outBuf, w.hold, w.holdBuf, w.big = nil, nil, nil, nil, nil
	_ = c.nc.SetDeadline(time.Time{})
	c.srv.forgetHijacked(c)
	return c.nc, bufio.NewReadWriter(bufio.NewReaderSize(src, hijackReadBuffer), bufio.NewWriterSize(c.nc, 64)), nil
}

// forgetHijacked stops counting a hijacked connection as the server's.
func (s *Server) forgetHijacked(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	if s.ConnState != nil {
		s.ConnState(c.nc, http.StateHijacked)
	}
}
