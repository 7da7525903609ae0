package proxy

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/herd-server/herd/protocol"
	"github.com/herd-server/herd/proxy/h1"
)

// The head checker sits between a client connection and net/http's parser. It reads each
// HTTP/1 request head whole before net/http sees a byte of it, and refuses the shapes that
// net/http would let through although a proxy in front of herd may read them differently
// (request smuggling), and the heads beyond gunicorn's limits:
//
//   - Content-Length together with Transfer-Encoding (net/http drops the Content-Length),
//     Transfer-Encoding on an HTTP/1.0 request (net/http ignores it and reads the chunked
//     body as the next request), chunked not last or given twice: 400 (RFC 9112 6.1, 6.3);
//   - obs-fold continuation lines and bare LF line ends (net/http accepts both): 400;
//   - a request line longer than HeadLimits.RequestLine: 414; more header fields than
//     HeadLimits.Fields, or one longer than HeadLimits.FieldSize: 431.
//
// What net/http refuses well by itself (NUL, CR or other controls in a value, a bad header
// name, differing Content-Length values, %zz in the path, an unknown coding: 501) passes on
// and is refused there.
//
// To follow where one request ends and the next head starts, the checker frames bodies the
// way net/http will (Content-Length bytes, or chunks to the last one and its trailers).
// A refused head never reaches net/http: the checker hands it instead a request that only it
// can write (the rejectMethod with a secret token), which the Handler answers with the status
// and closes the connection; the client's remaining bytes are never read. So the refusal goes
// out through net/http in order, after any response to an earlier pipelined request.

// HeadLimits are gunicorn's --limit-request-* options. Zero means herd's ceiling: a whole
// head of at most maxHeadCeiling bytes, which also bounds the heads the limits allow.
type HeadLimits struct {
	RequestLine int // bytes of the request line, without its CRLF
	Fields      int // header field lines
	FieldSize   int // bytes of one header field line, without its CRLF
	// HeadTimeout (--header-timeout) bounds how long a head may take from its first byte:
	// a slower one gets 408. net/http's ReadHeaderTimeout covers a connection's first head
	// already; this one covers the later heads of a kept-alive connection, for which
	// net/http starts its timer only once the checker hands it the whole head.
	HeadTimeout time.Duration
	// H2C lets a connection that opens with HTTP/2's client preface pass unjudged, for
	// net/http's cleartext HTTP/2 (--h2c). Without it the preface is refused with 400.
	H2C bool
}

// maxHeadCeiling bounds a request head whatever the limits say. A head goes to the worker as
// the vars block of one uwsgi packet, at most 64 KiB, and each field becomes a var at least
// as long as its line (so do the request line's parts): a head much larger than that can
// never reach a worker and gets 431 anyway. Refusing it here, before net/http parses it,
// keeps a slow client's buffer and a huge head's parsing to this size, where gunicorn's
// limits alone allow 800 KiB heads. The 4 KiB over the packet leave room for the bytes a
// head has and its vars do not (CRLFs, the version, fields herd drops).
const maxHeadCeiling = protocol.MaxVarsSize + 4096

// MaxHead is the largest head the limits allow: the checker refuses larger ones with 431,
// and net/http's MaxHeaderBytes must be above it so that the checker speaks first.
func (l HeadLimits) MaxHead() int {
	if l.RequestLine <= 0 || l.Fields <= 0 || l.FieldSize <= 0 {
		return maxHeadCeiling
	}
	return min(maxHeadCeiling, l.RequestLine+2+l.Fields*(l.FieldSize+2)+2)
}

// CheckHeads wraps a listener so that every connection it accepts goes through the checker.
func CheckHeads(ln net.Listener, limits HeadLimits) net.Listener {
	return &headCheckListener{Listener: ln, limits: limits}
}

type headCheckListener struct {
	net.Listener
	limits HeadLimits
}

func (l *headCheckListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &checkedConn{Conn: c, limits: l.limits, maxHead: l.limits.MaxHead(), maybeH2C: l.limits.H2C}, nil
}

// rejectMethod and rejectToken make the stand-in request for a refused head. The token is
// random per process, so a client that sends this method itself reaches the app like any
// other request.
const rejectMethod = "HERD-REJECT"

var rejectToken = func() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}()

// rejection is why a head was refused.
type rejection struct {
	status int
	reason string
}

func (r rejection) request() []byte {
	return []byte(rejectMethod + " /" + rejectToken + "/" + strconv.Itoa(r.status) + "/" + r.reason +
		" HTTP/1.1\r\nHost: herd\r\n\r\n")
}

// parseRejection recognises the stand-in request the checker wrote.
func parseRejection(method, path string) (rejection, bool) {
	if method != rejectMethod {
		return rejection{}, false
	}
	rest, ok := strings.CutPrefix(path, "/"+rejectToken+"/")
	if !ok {
		return rejection{}, false
	}
	code, reason, _ := strings.Cut(rest, "/")
	status, err := strconv.Atoi(code)
	if err != nil {
		return rejection{}, false
	}
	return rejection{status: status, reason: reason}, true
}

type checkState int

const (
	inHead      checkState = iota // reading a request head
	inBody                        // passing bodyLeft bytes of a Content-Length body
	inChunkSize                   // expecting a chunk-size line
	inChunkData                   // passing bodyLeft bytes of chunk data
	inChunkEnd                    // expecting the CRLF after chunk data
	inTrailers                    // expecting trailer lines up to an empty one
	passThrough                   // a coding net/http refuses with 501 and a close: stop judging
	closing                       // a head was refused: the stand-in, then EOF
)

// maxChunkLine bounds a chunk-size line with its extensions, and maxTrailers the trailer lines.
const (
	maxChunkLine = 4096
	maxTrailers  = 100
)

// checkedConn judges the bytes a client sends before net/http reads them. buf[r:j] is
// judged and waits for net/http; buf[j:] is read but not judged yet.
type checkedConn struct {
	net.Conn
	limits  HeadLimits
	maxHead int

	buf      []byte
	r, j     int
	state    checkState
	bodyLeft int64
	trailers int
	// maybeH2C: the first head is still to come, and may be HTTP/2's preface.
	maybeH2C bool
	scan     headScan
	// headStart is when the head being read was first seen in part; zero between heads.
	headStart time.Time
}

// headScan remembers how far the head in buf[j:] was searched, so that a head arriving in
// many small reads is scanned once in all, not once per read: a client trickling a large
// head in small segments would otherwise cost the master CPU in the square of its size.
type headScan struct {
	next    int // offset in buf[j:] of the first line not searched yet
	firstLF int // offset of the request line's LF; 0 until seen (an LF at 0 ends the head)
}

// h2Preface opens every HTTP/2 connection (RFC 9113 3.4); with prior knowledge it is the
// first thing a cleartext client sends.
var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

func (c *checkedConn) Read(p []byte) (int, error) {
	for {
		if c.r < c.j {
			n := copy(p, c.buf[c.r:c.j])
			c.r += n
			return n, nil
		}
		if c.state == closing {
			return 0, io.EOF
		}
		if c.judge() {
			continue
		}
		if c.j == len(c.buf) && c.direct() {
			// Nothing is held back: body bytes (and everything after giving up on
			// judging) go straight into the caller's buffer.
			n, err := c.Conn.Read(c.limitBody(p))
			c.consumed(n)
			return n, err
		}
		// An error (a timeout that net/http set to stop its background read, or the
		// client gone) keeps what was read: a later Read may go on where this one stopped.
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
}

// CloseWrite lets net/http half-close a TCP connection after an error response, as it
// does without the checker.
func (c *checkedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// ReadFrom passes the connection's own ReadFrom on: net/http's response.ReadFrom looks for
// it on the connection to send a file body with sendfile (--static). The checker judges
// what the client sends, never what goes out.
func (c *checkedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// direct says whether the next bytes need no judging.
func (c *checkedConn) direct() bool {
	return c.state == passThrough || ((c.state == inBody || c.state == inChunkData) && c.bodyLeft > 0)
}

func (c *checkedConn) limitBody(p []byte) []byte {
	if c.state != passThrough && int64(len(p)) > c.bodyLeft {
		return p[:c.bodyLeft]
	}
	return p
}

// consumed notes n body bytes read past the buffer.
func (c *checkedConn) consumed(n int) {
	if c.state == passThrough {
		return
	}
	c.bodyLeft -= int64(n)
	if c.bodyLeft == 0 {
		c.endOfData()
	}
}

// fill reads more from the client into buf, first dropping what net/http has taken.
func (c *checkedConn) fill() error {
	if c.r == len(c.buf) {
		c.buf, c.r, c.j = c.buf[:0], 0, 0
	}
	if cap(c.buf)-len(c.buf) < 1024 {
		held := len(c.buf) - c.r
		if c.r > 0 && held < cap(c.buf)/2 {
			copy(c.buf, c.buf[c.r:])
			c.buf, c.j, c.r = c.buf[:held], c.j-c.r, 0
		} else {
			grown := make([]byte, len(c.buf), max(4096, 2*cap(c.buf)))
			copy(grown, c.buf)
			c.buf = grown
		}
	}
	n, err := c.Conn.Read(c.buf[len(c.buf):cap(c.buf)])
	c.buf = c.buf[:len(c.buf)+n]
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// judge moves what it can of buf[j:] into the judged part; false when it needs more bytes.
func (c *checkedConn) judge() bool {
	rest := c.buf[c.j:]
	switch c.state {
	case passThrough:
		c.j = len(c.buf)
		return len(rest) > 0
	case inBody, inChunkData:
		n := min(int64(len(rest)), c.bodyLeft)
		c.j += int(n)
		c.bodyLeft -= n
		if c.bodyLeft == 0 {
			c.endOfData()
			return true
		}
		return n > 0
	case inChunkSize, inChunkEnd, inTrailers:
		return c.judgeChunkLine(rest)
	default:
		return c.judgeHead(rest)
	}
}

// endOfData moves on after the last byte of a Content-Length body or of one chunk.
func (c *checkedConn) endOfData() {
	if c.state == inChunkData {
		c.state = inChunkEnd
	} else {
		c.state = inHead
	}
}

func (c *checkedConn) judgeChunkLine(rest []byte) bool {
	nl := bytes.IndexByte(rest, '\n')
	if nl < 0 {
		if len(rest) > maxChunkLine {
			c.dead()
			return true
		}
		return false
	}
	if nl == 0 || rest[nl-1] != '\r' {
		c.dead()
		return true
	}
	line := rest[:nl-1]
	switch c.state {
	case inChunkEnd:
		if len(line) != 0 {
			c.dead()
			return true
		}
		c.state = inChunkSize
	case inChunkSize:
		size, ok := h1.ParseChunkSize(line)
		if !ok {
			c.dead()
			return true
		}
		c.state, c.bodyLeft, c.trailers = inChunkData, size, 0
		if size == 0 {
			c.state = inTrailers
		}
	case inTrailers:
		c.trailers++
		switch {
		case len(line) == 0:
			c.state = inHead
		case c.trailers > maxTrailers, line[0] == ' ', line[0] == '\t':
			c.dead()
			return true
		}
	}
	c.j += nl + 1
	return true
}

// dead stops the connection after what was judged: a chunked body net/http may frame
// differently from us must not let the bytes after it pass as a request. net/http then
// fails to read the body, the handler answers 400, and the connection closes.
func (c *checkedConn) dead() {
	c.buf = c.buf[:c.j]
	c.state = closing
}

// judgeHead judges a whole request head once it is in buf[j:].
func (c *checkedConn) judgeHead(rest []byte) bool {
	if c.maybeH2C {
		if len(rest) < len(h2Preface) && bytes.HasPrefix(h2Preface, rest) {
			return false // perhaps the preface: wait for all of it
		}
		c.maybeH2C = false
		if bytes.HasPrefix(rest, h2Preface) {
			// HTTP/2 frames from here on, which net/http's HTTP/2 server checks.
			c.state = passThrough
			return true
		}
	}
	end := c.scan.headEnd(rest)
	if end < 0 {
		if bad, ok := c.judgePartialHead(rest); ok {
			c.refuse(bad)
			return true
		}
		return false
	}
	c.scan, c.headStart = headScan{}, time.Time{}
	verdict, next, bodyLen := c.judgeFraming(rest[:end])
	if verdict.status != 0 {
		c.refuse(verdict)
		return true
	}
	c.j += end
	c.state, c.bodyLeft = next, bodyLen
	if next == inBody && bodyLen == 0 {
		c.state = inHead
	}
	return true
}

// headEnd returns the length of the head up to and with its empty line, or -1. A bare LF
// counts as a line end here, so that judgeFraming sees (and refuses) it. It goes on from
// where the last call stopped.
func (s *headScan) headEnd(b []byte) int {
	for i := s.next; ; {
		nl := bytes.IndexByte(b[i:], '\n')
		if nl < 0 {
			s.next = i
			return -1
		}
		if s.firstLF == 0 {
			s.firstLF = i + nl
		}
		line := b[i : i+nl]
		i += nl + 1
		if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
			return i
		}
	}
}

// judgePartialHead refuses a head that is already too long, or too slow, before it is
// complete.
func (c *checkedConn) judgePartialHead(rest []byte) (rejection, bool) {
	if c.limits.HeadTimeout > 0 && len(rest) > 0 {
		if c.headStart.IsZero() {
			c.headStart = time.Now()
		} else if time.Since(c.headStart) > c.limits.HeadTimeout {
			return rejection{http.StatusRequestTimeout, "request-head-timeout"}, true
		}
	}
	first := c.scan.firstLF
	if c.limits.RequestLine > 0 && (first == 0 && len(rest) > c.limits.RequestLine+1 ||
		first > c.limits.RequestLine+1) {
		return rejection{414, "request-line-too-long"}, true
	}
	if len(rest) > c.maxHead {
		return rejection{431, "request-header-too-large"}, true
	}
	return rejection{}, false
}

// judgeFraming checks every line of a complete head and says how its body is framed.
func (c *checkedConn) judgeFraming(head []byte) (rejection, checkState, int64) {
	var contentLength []string
	var transferEncoding []string
	fields := 0
	http10 := false
	for i, first := 0, true; i < len(head); first = false {
		nl := bytes.IndexByte(head[i:], '\n')
		line := head[i : i+nl]
		i += nl + 1
		if len(line) == 0 || line[len(line)-1] != '\r' {
			return rejection{400, "bare-LF-line-end"}, 0, 0
		}
		line = line[:len(line)-1]
		if first {
			if c.limits.RequestLine > 0 && len(line) > c.limits.RequestLine {
				return rejection{414, "request-line-too-long"}, 0, 0
			}
			// net/http would take HTTP/1.2 as 1.x, and HTTP/2's preface has no meaning on
			// an HTTP/1 listener: only the two real versions pass.
			if !bytes.HasSuffix(line, []byte(" HTTP/1.1")) && !bytes.HasSuffix(line, []byte(" HTTP/1.0")) {
				return rejection{400, "bad-request-line"}, 0, 0
			}
			http10 = bytes.HasSuffix(line, []byte("1.0"))
			continue
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return rejection{400, "obs-fold"}, 0, 0
		}
		if fields++; c.limits.Fields > 0 && fields > c.limits.Fields {
			return rejection{431, "too-many-header-fields"}, 0, 0
		}
		if c.limits.FieldSize > 0 && len(line) > c.limits.FieldSize {
			return rejection{431, "header-field-too-large"}, 0, 0
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		switch {
		case asciiEqualFold(name, "content-length"):
			contentLength = append(contentLength, splitList(value)...)
		case asciiEqualFold(name, "transfer-encoding"):
			transferEncoding = append(transferEncoding, splitList(value)...)
		}
	}
	return framing(contentLength, transferEncoding, http10)
}

// framing applies RFC 9112 6.1 and 6.3 to the Content-Length and Transfer-Encoding values.
func framing(contentLength, transferEncoding []string, http10 bool) (rejection, checkState, int64) {
	if len(transferEncoding) > 0 {
		switch {
		case len(contentLength) > 0:
			return rejection{400, "Content-Length-with-Transfer-Encoding"}, 0, 0
		case http10:
			return rejection{400, "Transfer-Encoding-in-HTTP/1.0"}, 0, 0
		case !strings.EqualFold(transferEncoding[len(transferEncoding)-1], "chunked"):
			return rejection{400, "chunked-not-the-final-coding"}, 0, 0
		}
		for _, te := range transferEncoding[:len(transferEncoding)-1] {
			if strings.EqualFold(te, "chunked") {
				return rejection{400, "chunked-twice"}, 0, 0
			}
		}
		if len(transferEncoding) > 1 {
			return rejection{}, passThrough, 0 // another coding: net/http answers 501
		}
		return rejection{}, inChunkSize, 0
	}
	if len(contentLength) == 0 {
		return rejection{}, inHead, 0
	}
	for _, v := range contentLength[1:] {
		if v != contentLength[0] {
			return rejection{400, "differing-Content-Length"}, 0, 0
		}
	}
	n, err := strconv.ParseInt(contentLength[0], 10, 64)
	if err != nil || n < 0 || contentLength[0][0] == '+' {
		return rejection{400, "bad-Content-Length"}, 0, 0
	}
	return rejection{}, inBody, n
}

func splitList(value []byte) []string {
	var out []string
	for part := range strings.SplitSeq(string(value), ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	if len(out) == 0 {
		out = append(out, "")
	}
	return out
}

func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range b {
		if b[i]|0x20 != lower[i] {
			return false
		}
	}
	return true
}

// refuse replaces the head and everything after it with the stand-in request.
func (c *checkedConn) refuse(why rejection) {
	c.buf = append(c.buf[:c.j], why.request()...)
	c.j = len(c.buf)
	c.state = closing
}
