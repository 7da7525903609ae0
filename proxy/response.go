package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strconv"
	"strings"
)

// The worker's answer is read by ReadResponseHead, not by net/http's http.ReadResponse: the
// generic reader builds an *http.Response, a textproto.Reader and a string per line, and
// accepts more than herd wants from the process behind it (bare LF line ends, obs-fold,
// HTTP/1.x versions it guesses at). This one reads the head into one string, parses it in
// place, and refuses every shape that is not a plain HTTP/1.0 or 1.1 head with CRLF line
// ends. A refused head is a broken worker: the client gets 502 (requestStatus).

// maxResponseHead bounds a worker's status line and header fields together, so a worker
// that writes a head without end cannot grow the master's memory.
const maxResponseHead = 1 << 20

// ErrBadResponse is the error of every malformed worker response head; the wrapping error
// says what was wrong.
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
	status, rest, err := nextLine(raw)
	if err != nil {
		return err
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
	for {
		var line string
		if line, rest, err = nextLine(rest); err != nil {
			return err
		}
		if line == "" {
			break
		}
		name, value, err := parseField(line)
		if err != nil {
			return err
		}
		values = append(values, value)
		if prev, ok := head.Header[name]; ok {
			head.Header[name] = append(prev, value)
		} else {
			// Capacity 1: a repeated field appends to a copy, not over the next value.
			head.Header[name] = values[len(values)-1 : len(values) : len(values)]
		}
	}
	if rest != "" {
		return badResponse("bytes after the end of the head", rest)
	}
	if err := head.setFraming(head.Header["Content-Length"], head.Header["Transfer-Encoding"], http10); err != nil {
		return err
	}
	head.Close = closes(head.Header["Connection"], http10)
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

// nextLine splits off the first CRLF-ended line of s, refusing a bare CR or LF in it.
func nextLine(s string) (line, rest string, err error) {
	nl := strings.IndexByte(s, '\n')
	if nl < 0 {
		return "", "", badResponse("unterminated line", s)
	}
	if nl == 0 || s[nl-1] != '\r' {
		return "", "", badResponse("line not ended by CRLF", s[:nl])
	}
	line = s[:nl-1]
	if strings.IndexByte(line, '\r') >= 0 {
		return "", "", badResponse("CR inside a line", line)
	}
	return line, s[nl+1:], nil
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

// parseField splits "Name: value" into the canonical name and the value without its
// surrounding whitespace.
func parseField(line string) (name, value string, err error) {
	if line[0] == ' ' || line[0] == '\t' {
		return "", "", badResponse("obs-fold continuation line", line)
	}
	colon := strings.IndexByte(line, ':')
	if colon <= 0 {
		return "", "", badResponse("header field without a name", line)
	}
	name = line[:colon]
	for i := 0; i < len(name); i++ {
		if !isTokenByte(name[i]) {
			return "", "", badResponse("bad header field name", line)
		}
	}
	value = strings.Trim(line[colon+1:], " \t")
	if !validFieldValue(value) {
		return "", "", badResponse("control byte in a header field value", line)
	}
	return textproto.CanonicalMIMEHeaderKey(name), value, nil
}

// validFieldValue: field-content of RFC 9110 5.5, visible ASCII, obs-text, space and tab.
func validFieldValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// isTokenByte: tchar of RFC 9110 5.6.2.
func isTokenByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// setFraming applies Content-Length and Transfer-Encoding. Unlike a client, the master
// refuses every doubt: a worker's answer framed two ways could make the next answer on the
// connection start in the wrong place.
func (h *ResponseHead) setFraming(contentLength, transferEncoding []string, http10 bool) error {
	if len(transferEncoding) > 0 {
		switch {
		case len(contentLength) > 0:
			return badResponse("Content-Length with Transfer-Encoding", transferEncoding[0])
		case http10:
			return badResponse("Transfer-Encoding in an HTTP/1.0 response", transferEncoding[0])
		case len(transferEncoding) > 1 || !strings.EqualFold(transferEncoding[0], "chunked"):
			return badResponse("Transfer-Encoding other than chunked", strings.Join(transferEncoding, ", "))
		}
		h.Chunked = true
		return nil
	}
	var length string
	for _, v := range contentLength {
		for part := range strings.SplitSeq(v, ",") {
			part = strings.Trim(part, " \t")
			if length != "" && part != length {
				return badResponse("conflicting Content-Length values", strings.Join(contentLength, ", "))
			}
			length = part
		}
	}
	if len(contentLength) == 0 {
		return nil
	}
	n, err := strconv.ParseInt(length, 10, 64)
	if err != nil || n < 0 || length[0] == '+' {
		return badResponse("bad Content-Length", length)
	}
	h.ContentLength = n
	return nil
}

// closes says whether the Connection fields end the connection after this response.
func closes(connection []string, http10 bool) bool {
	keepAlive := false
	for _, v := range connection {
		for token := range strings.SplitSeq(v, ",") {
			token = strings.Trim(token, " \t")
			switch {
			case strings.EqualFold(token, "close"):
				return true
			case strings.EqualFold(token, "keep-alive"):
				keepAlive = true
			}
		}
	}
	return http10 && !keepAlive
}

// Body returns the reader of the body that follows the head on r. It returns io.EOF at the
// body's end, io.ErrUnexpectedEOF when the connection ends first, and an error wrapping
// ErrBadResponse for malformed chunked framing.
func (h *ResponseHead) Body(r *bufio.Reader) io.Reader {
	switch {
	case h.NoBody:
		return http.NoBody
	case h.Chunked:
		return &chunkedBody{br: r, chunks: httputil.NewChunkedReader(r)}
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

// chunkedBody reads a chunked body and, after its last chunk, the trailer section up to
// its empty line, so that the connection is left at the next response. Trailers are
// dropped: the head went out already.
type chunkedBody struct {
	br     *bufio.Reader
	chunks io.Reader
	done   bool
}

// maxTrailerBytes bounds the trailer section after the last chunk.
const maxTrailerBytes = 64 << 10

func (b *chunkedBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.chunks.Read(p)
	if err == io.EOF {
		if terr := b.skipTrailers(); terr != nil {
			return n, terr
		}
		b.done = true
	} else if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		err = fmt.Errorf("%w: chunked body: %w", ErrBadResponse, err)
	}
	return n, err
}

func (b *chunkedBody) skipTrailers() error {
	for total := 0; ; {
		line, err := b.br.ReadSlice('\n')
		total += len(line)
		switch {
		case err == io.EOF:
			return io.ErrUnexpectedEOF
		case err == bufio.ErrBufferFull || total > maxTrailerBytes:
			return fmt.Errorf("%w: trailer section longer than %d bytes", ErrBadResponse, maxTrailerBytes)
		case err != nil:
			return fmt.Errorf("read response trailers: %w", err)
		case len(line) < 2 || line[len(line)-2] != '\r':
			return badResponse("trailer line not ended by CRLF", string(line))
		case len(line) == 2:
			return nil
		}
	}
}
