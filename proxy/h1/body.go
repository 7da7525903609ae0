package h1

import (
	"io"
	"time"
)

// body is a request body, read from the connection's buffer and then from the socket. It
// stops at the body's end, so the next request's bytes stay for the next head.
type body struct {
	c       *conn
	left    int64 // Content-Length bytes left
	chunked bool
	chunks  chunks // the framing of a chunked body (grammar.go)
	err     error  // sticky: io.EOF at the end, or what broke
	// expectContinue: the client waits for "100 Continue" before it sends the body; it goes
	// out on the first Read, so a request refused without reading its body never invites it.
	expectContinue bool
}

func (b *body) reset(c *conn, length int64, chunked, expectContinue bool) {
	*b = body{c: c, left: length, chunked: chunked, expectContinue: expectContinue}
	if !chunked && length == 0 {
		b.err = io.EOF
	}
}

func (b *body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.expectContinue {
		b.expectContinue = false
		if err := b.c.sendContinue(); err != nil {
			b.err = err
			return 0, err
		}
	}
	if !b.chunked {
		n, err := b.readData(p, b.left)
		b.left -= int64(n)
		if b.left == 0 && err == nil {
			b.err = io.EOF // the next Read says so
		}
		return n, err
	}
	for {
		switch b.chunks.state {
		case chunkData:
			n, err := b.readData(p, b.chunks.left)
			b.chunks.data(n)
			return n, err
		case chunkDone:
			b.err = io.EOF
			return 0, io.EOF
		}
		line, err := b.c.readLine(maxChunkLine)
		if err == nil {
			err = b.chunks.line(line)
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			b.err = err
			return 0, err
		}
	}
}

// readData passes up to left bytes: from the buffer first, then straight from the socket
// into p, since a large body need not go through the buffer.
func (b *body) readData(p []byte, left int64) (int, error) {
	if int64(len(p)) > left {
		p = p[:left]
	}
	if len(p) == 0 {
		return 0, nil
	}
	c := b.c
	if c.r < c.w {
		n := copy(p, c.buf[c.r:c.w])
		c.r += n
		return n, nil
	}
	if t := c.srv.BodyIdleTimeout; t > 0 {
		_ = c.nc.SetReadDeadline(time.Now().Add(t))
	}
	n, err := c.rw.Read(p)
	if n == 0 {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		b.err = err
		return 0, err
	}
	return n, nil
}

// done reports whether the body was read to its end.
func (b *body) done() bool { return b.err == io.EOF }

// failed reports whether the body's framing or the connection broke while reading it.
func (b *body) failed() bool { return b.err != nil && b.err != io.EOF }

func (b *body) Close() error { return nil }

// maxDiscard is how much of a body the handler left unread is read and dropped to keep the
// connection for the next request, as net/http does; past it the connection closes.
const maxDiscard = 256 << 10

// tooLongToDiscard says that the body's unread rest is not one discard will read: longer
// than maxDiscard, of unknown length (chunked), or not coming (the client waits for 100
// Continue). The connection then closes after the response.
func (b *body) tooLongToDiscard() bool {
	if b.done() || b.failed() {
		return false
	}
	return b.expectContinue || b.chunked || b.left > maxDiscard
}

// discard reads the rest of the body up to maxDiscard; false when the connection cannot
// carry another request.
func (b *body) discard() bool {
	if b.done() {
		return true
	}
	if b.failed() || b.tooLongToDiscard() {
		// Past what is read to keep the connection; or the client still waits for "100
		// Continue" and will send no body, though its bytes may come anyway: close, as
		// net/http does.
		return false
	}
	n, err := io.CopyN(io.Discard, b, maxDiscard+1)
	return n <= maxDiscard && err == io.EOF
}
