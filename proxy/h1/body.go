package h1

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"time"
)

// Bounds of a chunked body's framing, as herd's head checker had them: a chunk-size line
// with its extensions, and the trailer lines after the last chunk.
const (
	maxChunkLine = 4096
	maxTrailers  = 100
)

// errBadChunk is any chunked framing herd will not read: a bad size line, a missing CRLF,
// too many or folded trailers. The connection closes after such a body.
var errBadChunk = errors.New("malformed chunked request body")

type chunkState int

const (
	chunkSize    chunkState = iota // expecting a chunk-size line
	chunkData                      // left bytes of chunk data to pass
	chunkDataEnd                   // expecting the CRLF after chunk data
	chunkTrailer                   // expecting trailer lines up to an empty one
	chunkDone
)

// body is a request body, read from the connection's buffer and then from the socket. It
// stops at the body's end, so the next request's bytes stay for the next head.
type body struct {
	c        *conn
	left     int64 // Content-Length bytes left, or bytes left in the current chunk
	chunked  bool
	state    chunkState
	trailers int
	err      error // sticky: io.EOF at the end, or what broke
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
		return b.readData(p, false)
	}
	for {
		switch b.state {
		case chunkData:
			return b.readData(p, true)
		case chunkDone:
			return 0, b.err
		}
		if err := b.framingLine(); err != nil {
			b.err = err
			return 0, err
		}
	}
}

// readData passes up to left bytes: from the buffer first, then straight from the socket
// into p, since a large body need not go through the buffer.
func (b *body) readData(p []byte, chunk bool) (int, error) {
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	if len(p) == 0 {
		return 0, nil
	}
	c := b.c
	var n int
	if c.r < c.w {
		n = copy(p, c.buf[c.r:c.w])
		c.r += n
	} else {
		var err error
		if t := c.srv.BodyIdleTimeout; t > 0 {
			_ = c.nc.SetReadDeadline(time.Now().Add(t))
		}
		n, err = c.rw.Read(p)
		if n == 0 {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			b.err = err
			return 0, err
		}
	}
	b.left -= int64(n)
	if b.left == 0 {
		if chunk {
			b.state = chunkDataEnd
		} else {
			b.err = io.EOF
		}
	}
	return n, nil
}

// framingLine reads one line of chunked framing and moves the state on.
func (b *body) framingLine() error {
	line, err := b.c.readLine(maxChunkLine)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	switch b.state {
	case chunkDataEnd:
		if len(line) != 0 {
			return errBadChunk
		}
		b.state = chunkSize
	case chunkSize:
		size, ok := ParseChunkSize(line)
		if !ok {
			return errBadChunk
		}
		b.left, b.state = size, chunkData
		if size == 0 {
			b.state = chunkTrailer
		}
	case chunkTrailer:
		b.trailers++
		switch {
		case len(line) == 0:
			b.state, b.err = chunkDone, io.EOF
		case b.trailers > maxTrailers, line[0] == ' ', line[0] == '\t':
			return errBadChunk
		}
	}
	return nil
}

// ParseChunkSize reads "1a2b" or "1a2b;ext=v" (RFC 9112 7.1).
func ParseChunkSize(line []byte) (int64, bool) {
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimRight(line, " \t")
	if len(line) == 0 || len(line) > 15 || line[0] == '+' || line[0] == '-' {
		return 0, false
	}
	n, err := strconv.ParseInt(string(line), 16, 64)
	return n, err == nil
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
