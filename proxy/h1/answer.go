package h1

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// The parser of what a worker answers. The worker's answer is read by ReadResponseHead, not
// by net/http's http.ReadResponse: the generic reader builds an *http.Response, a
// textproto.Reader and a string per line, and accepts more than herd wants from the process
// behind it (bare LF line ends, obs-fold, HTTP/1.x versions it guesses at). This one reads
// the head into one string, parses it in place with the grammar a client's request is read
// with (grammar.go), and refuses every shape that is not a plain HTTP/1.0 or 1.1 head with
// CRLF line ends. A refused head is a broken worker: the client gets 502 (proxy's
// requestStatus).

// maxResponseHead bounds a worker's status line and header fields together, so a worker
// that writes a head without end cannot grow the master's memory.
const maxResponseHead = 1 << 20

// ErrBadResponse is the error of every malformed worker response; the wrapping error says
// what was wrong.
var ErrBadResponse = errors.New("malformed worker response")

// ResponseHead is the status line and header of a worker's response.
type ResponseHead struct {
	StatusCode int
	// Header holds the fields as the worker sent them, under canonical keys, hop-by-hop
	// ones included: the caller decides what it passes on.
	Header http.Header
	// ContentLength is the Content-Length value, or -1 when the worker sent none (the body
	// is then chunked, or runs to the end of the connection).
	ContentLength int64
	// Chunked: Transfer-Encoding: chunked.
	Chunked bool
	// NoBody: no body follows the head whatever its fields say (an answer to HEAD; 1xx,
	// 204, 304).
	NoBody bool
	// Close: the connection carries no other response after this one (Connection: close,
	// an HTTP/1.0 head without keep-alive, or a body that runs to the connection's end).
	Close bool
}

// ReadResponseHead reads a worker's response head from r into head, leaving r at the first
// byte of the body; method is the request's (an answer to HEAD has no body). It fails with
// an error wrapping ErrBadResponse when the head is malformed: a status line other than
// "HTTP/1.0|1.1 NNN reason" with a code of 200-599, a line not ended by CRLF, a CR, LF or
// other control byte inside a line, obs-fold, a field name that is not a token, an invalid
// or conflicting Content-Length, a Transfer-Encoding other than a lone chunked, both of
// them, or a head over 1 MiB. A read error (EOF before the end of the head included) is
// returned wrapped as it is.
func ReadResponseHead(r *bufio.Reader, method string, head *ResponseHead) error {
	raw, err := readHeadBytes(r)
	if err != nil {
		return err
	}
	*head = ResponseHead{ContentLength: -1}
	return parseResponseHead(raw, method, head)
}

// readHeadBytes reads up to and with the empty line that ends a head, as one string.
func readHeadBytes(r *bufio.Reader) (string, error) {
	var stack [1024]byte
	acc := stack[:0]
	lineStart := 0
	for {
		line, err := r.ReadSlice('\n')
		acc = append(acc, line...)
		if len(acc) > maxResponseHead {
			return "", fmt.Errorf("%w: head longer than %d bytes", ErrBadResponse, maxResponseHead)
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue // a line longer than the reader's buffer: keep reading it
		case err == io.EOF && len(acc) == 0:
			return "", fmt.Errorf("read response head: %w", io.EOF)
		case err == io.EOF:
			return "", fmt.Errorf("read response head: %w", io.ErrUnexpectedEOF)
		case err != nil:
			return "", fmt.Errorf("read response head: %w", err)
		}
		// A complete line: an empty one ends the head. A bare LF ends it too, so that the
		// parser sees (and refuses) it rather than this loop waiting for more.
		if n := len(acc) - lineStart; n == 1 || n == 2 && acc[lineStart] == '\r' {
			return string(acc), nil
		}
		lineStart = len(acc)
	}
}

func badResponse(what string, line string) error {
	if len(line) > 80 {
		line = line[:80] + "..."
	}
	return fmt.Errorf("%w: %s: %q", ErrBadResponse, what, line)
}

// parseResponseHead parses a whole head (every line with its line end, the empty one last).
func parseResponseHead(raw, method string, head *ResponseHead) error {
	status, rest, fault := nextLine(raw)
	if fault != nil {
		return badResponse(fault.reason, raw)
	}
	http10, err := parseStatusLine(status, head)
	if err != nil {
		return err
	}
	// Every line but the status line and the empty one is a field; one block of value
	// slices serves all of them.
	fields := strings.Count(rest, "\n") - 1
	head.Header = make(http.Header, fields)
	values := make([]string, 0, fields)
	var clArr, teArr [2]string
	contentLength, transferEncoding := clArr[:0], teArr[:0]
	for {
		var line string
		if line, rest, fault = nextLine(rest); fault != nil {
			return badResponse(fault.reason, rest)
		}
		if line == "" {
			break
		}
		name, value, fault := splitField(line)
		if fault != nil {
			return badResponse(fault.reason, line)
		}
		switch name {
		case "Content-Length":
			contentLength = appendList(contentLength, value)
		case "Transfer-Encoding":
			transferEncoding = appendList(transferEncoding, value)
		}
		values = append(values, value)
		if prev, ok := head.Header[name]; ok {
			head.Header[name] = append(prev, value)
		} else {
			// Capacity 1: a repeated field appends to a copy, not over the next value.
			head.Header[name] = values[len(values)-1 : len(values) : len(values)]
		}
	}
	// Unlike a client, the master refuses every doubt about the framing: a worker's answer
	// framed two ways could make the next answer on the connection start in the wrong place.
	head.ContentLength, head.Chunked, fault = frame(contentLength, transferEncoding, http10)
	if fault != nil {
		return badResponse(fault.reason, strings.Join(append(contentLength, transferEncoding...), ", "))
	}
	connection := head.Header["Connection"]
	head.Close = hasToken(connection, "close") || http10 && !hasToken(connection, "keep-alive")
	code := head.StatusCode
	if method == http.MethodHead || code < 200 || code == http.StatusNoContent || code == http.StatusNotModified {
		head.NoBody = true
		head.Chunked = false
		if head.ContentLength < 0 {
			head.ContentLength = 0
		}
	} else if head.ContentLength < 0 && !head.Chunked {
		head.Close = true // the body ends with the connection
	}
	return nil
}

// parseStatusLine reads "HTTP/1.1 200 OK" (the reason may be empty, with or without its
// space) and says whether the version is 1.0.
func parseStatusLine(line string, head *ResponseHead) (http10 bool, err error) {
	var rest string
	switch {
	case strings.HasPrefix(line, "HTTP/1.1 "):
		rest = line[9:]
	case strings.HasPrefix(line, "HTTP/1.0 "):
		rest, http10 = line[9:], true
	default:
		return false, badResponse("bad status line", line)
	}
	if len(rest) < 3 || len(rest) > 3 && rest[3] != ' ' {
		return false, badResponse("bad status code", line)
	}
	code := 0
	for _, c := range []byte(rest[:3]) {
		if c < '0' || c > '9' {
			return false, badResponse("bad status code", line)
		}
		code = code*10 + int(c-'0')
	}
	if code < 200 || code > 599 {
		// A worker answers each request once, with a final status: a 1xx would go out as
		// an interim answer (101 telling the client the protocol changed) and the real
		// one be lost; 600-999 are no HTTP statuses.
		return false, badResponse("status code not 200-599", line)
	}
	if len(rest) > 3 && !validFieldValue(rest[4:]) {
		return false, badResponse("control byte in the reason phrase", line)
	}
	head.StatusCode = code
	return http10, nil
}

// Body returns the reader of the body that follows the head on r. It returns io.EOF at the
// body's end, io.ErrUnexpectedEOF when the connection ends first, and an error wrapping
// ErrBadResponse for malformed chunked framing.
func (h *ResponseHead) Body(r *bufio.Reader) io.Reader {
	switch {
	case h.NoBody:
		return http.NoBody
	case h.Chunked:
		return &chunkedBody{br: r}
	case h.ContentLength >= 0:
		return &lengthBody{r: r, left: h.ContentLength}
	default:
		return r
	}
}

// lengthBody is a Content-Length body: io.LimitedReader, except that a connection that
// ends early is an error rather than a short body.
type lengthBody struct {
	r    io.Reader
	left int64
}

func (b *lengthBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if err == io.EOF && b.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	if err == io.EOF && n > 0 {
		err = nil // the next Read says EOF
	}
	return n, err
}

// chunkedBody reads a chunked body with the framing rules of a chunked request body
// (grammar.go's chunks) and, after its last chunk, the trailer section up to its empty
// line, so that the connection is left at the next response. Trailers are dropped: the
// head went out already.
type chunkedBody struct {
	br     *bufio.Reader
	chunks chunks
	err    error // sticky: io.EOF at the end, or what broke
}

func (b *chunkedBody) Read(p []byte) (int, error) {
	for b.err == nil {
		switch b.chunks.state {
		case chunkData:
			if len(p) == 0 {
				return 0, nil
			}
			if int64(len(p)) > b.chunks.left {
				p = p[:b.chunks.left]
			}
			n, err := b.br.Read(p)
			b.chunks.data(n)
			if err == io.EOF {
				err = io.ErrUnexpectedEOF // the framing is not over
			}
			b.err = err
			return n, err
		case chunkDone:
			b.err = io.EOF
		default:
			b.err = b.framingLine()
		}
	}
	return 0, b.err
}

// framingLine reads one line of the chunked framing off the connection and hands it to
// chunks.
func (b *chunkedBody) framingLine() error {
	line, err := b.br.ReadSlice('\n')
	switch {
	case err == io.EOF:
		return io.ErrUnexpectedEOF
	case err == bufio.ErrBufferFull || len(line) > maxChunkLine+1:
		return badResponse("chunked framing line too long", string(line))
	case err != nil:
		return fmt.Errorf("read chunked response body: %w", err)
	}
	text, ok := crlfLine(line[:len(line)-1])
	if !ok || b.chunks.line(text) != nil {
		return badResponse(errBadChunk.Error(), string(line))
	}
	return nil
}
