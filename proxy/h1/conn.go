package h1

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/herd-server/herd/internal/rawio"
)

// readBufferSize is a connection's first read buffer: a usual head fits. It grows for a
// larger head, up to the limits, and shrinks back after it.
const readBufferSize = 4096

// conn is one client connection, served by one goroutine.
type conn struct {
	srv *Server
	nc  net.Conn    // as accepted
	raw *rawio.Conn // nc's raw form; nil when nc has no descriptor (TLS)
	rw  io.ReadWriter
	tls *tls.ConnectionState

	remote string
	// sent is the raw connection the bytes to the client leave by (c.raw, or the one under
	// TLS): its WriteTimeout is Server.SendTimeout. nil when there is none.
	sent   *rawio.Conn
	ctx    context.Context
	cancel context.CancelFunc

	buf  []byte // buf[r:w] is read and not consumed
	r, w int
	// scanned is how far the head being read was searched for its end.
	scanned int

	// The request's state, reused from one request to the next.
	hd          head
	minor       int // the request's HTTP/1.minor
	req         http.Request
	reqBase     http.Request // carries the connection's context into req
	url         url.URL
	header      http.Header
	values      []string // the backing of header's values, reused as header is
	body        body
	resp        response
	handlerDone bool
	closeReply  bool // the request or the server wants this response to close

	// state is idle (0) between requests and active (1) while one is served, for
	// Shutdown, which closes idle connections only.
	state atomic.Int32
	// h2c is the connection going on as cleartext HTTP/2 (see takeH2C): once h1 has let
	// go of it, the server's H2C takes it instead of a close.
	h2c net.Conn
	// hijacked: the handler took the connection over (hijack.go); it is the handler's to
	// close.
	hijacked bool
}

const (
	stateIdle   = 0
	stateActive = 1
)

func newConn(srv *Server, nc net.Conn) *conn {
	c := &conn{srv: srv, nc: nc, rw: nc, remote: nc.RemoteAddr().String(), header: http.Header{}}
	if tc, ok := nc.(*tls.Conn); ok {
		st := tc.ConnectionState()
		c.tls = &st
		c.sent, _ = tc.NetConn().(*rawio.Conn) // see ServeTLS
	} else if raw, ok := rawio.New(nc); ok {
		c.raw, c.rw = raw, raw
		// The connection counts as idle, one that Shutdown may close, only once its last
		// answer went out: that happens in the next read.
		raw.AfterPending = func() { c.state.Store(stateIdle) }
		// A client may have sent its next request, pipelined, or closed, while this one's
		// answer was made: the read after the answer must look at once.
		raw.PeerMaySendFirst = true
		raw.WriteTimeout = srv.SendTimeout
		c.sent = raw
	}
	base := srv.baseContext()
	base = context.WithValue(base, http.LocalAddrContextKey, nc.LocalAddr())
	base = context.WithValue(base, localAddrStringKey{}, nc.LocalAddr().String())
	c.ctx, c.cancel = context.WithCancel(base)
	c.reqBase = *(&http.Request{}).WithContext(c.ctx)
	c.resp.header = http.Header{}
	return c
}

type localAddrStringKey struct{}

// LocalAddrString is the string form of the address a request's connection was accepted
// on, made once per connection: the proxy's SERVER_NAME and SERVER_PORT come from it.
func LocalAddrString(ctx context.Context) (string, bool) {
	s, ok := ctx.Value(localAddrStringKey{}).(string)
	return s, ok
}

// serve reads and answers requests until the connection ends.
func (c *conn) serve() {
	defer c.close()
	s := c.srv
	if s.HeaderTimeout > 0 {
		_ = c.nc.SetReadDeadline(time.Now().Add(s.HeaderTimeout))
	}
	for first := true; ; first = false {
		rej, err := c.readHead(first)
		if err != nil {
			return
		}
		if rej == errH2PrefaceOnHTTP && first {
			if c.h2c = c.takeH2C(); c.h2c != nil {
				return // close hands it over
			}
		}
		c.state.Store(stateActive)
		if rej != nil {
			c.refuse(rej)
			return
		}
		if !c.serveRequest() {
			return
		}
		if !c.srv.keepAlive() {
			return
		}
		if c.raw == nil || !c.raw.HasPending() {
			c.state.Store(stateIdle) // else once the answer is out (see newConn)
		}
		if c.srv.shuttingDown() && c.r == c.w {
			return
		}
	}
}

// readHead reads the next request head into c.hd. A client that goes away between requests
// or never sends a head is an error (nothing to answer); a head that breaks a rule is a
// rejection to answer.
func (c *conn) readHead(first bool) (*rejection, error) {
	s := c.srv
	if !first && c.r == c.w {
		switch {
		case s.IdleTimeout > 0:
			_ = c.nc.SetReadDeadline(time.Now().Add(s.IdleTimeout))
		case s.HeaderTimeout > 0:
			_ = c.nc.SetReadDeadline(time.Time{}) // the first head's deadline is over
		}
	}
	started := !first && c.r < c.w // a pipelined head began already
	if started && s.HeaderTimeout > 0 {
		_ = c.nc.SetReadDeadline(time.Now().Add(s.HeaderTimeout))
	}
	for {
		if c.r < c.w {
			b := c.buf[c.r:c.w]
			if end := headEnd(b, &c.scanned); end >= 0 {
				c.scanned = 0
				if rej := parseHead(b[:end], s.Limits, &c.hd); rej != nil {
					return rej, nil
				}
				c.r += end
				if c.r == c.w {
					c.r, c.w = 0, 0
				}
				c.shrink()
				return nil, nil
			}
			if rej := checkPartial(b, s.Limits, s.maxHead); rej != nil {
				return rej, nil
			}
			if !started {
				started = true
				if !first && s.HeaderTimeout > 0 {
					_ = c.nc.SetReadDeadline(time.Now().Add(s.HeaderTimeout))
				}
			}
		}
		if err := c.fill(); err != nil {
			var ne net.Error
			if started && !first && errors.As(err, &ne) && ne.Timeout() {
				// A kept-alive client that began a head and stalls: it hears why.
				return errHeadTimeout, nil
			}
			return nil, err
		}
	}
}

// fill reads more of the connection into buf, moving or growing it as needed.
func (c *conn) fill() error {
	if c.buf == nil {
		c.buf = make([]byte, readBufferSize)
	}
	if c.w == len(c.buf) {
		if c.r > 0 {
			c.w = copy(c.buf, c.buf[c.r:c.w])
			c.r = 0
		} else {
			grown := make([]byte, min(2*len(c.buf), c.srv.maxHead+readBufferSize))
			if len(grown) <= len(c.buf) {
				return errHeadTooLarge // checkPartial refuses it first; a guard
			}
			copy(grown, c.buf[:c.w])
			c.buf = grown
		}
	}
	n, err := c.rw.Read(c.buf[c.w:])
	c.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// shrink gives back a buffer grown for a large head once it holds nothing.
func (c *conn) shrink() {
	if len(c.buf) > readBufferSize && c.r == c.w {
		c.buf, c.r, c.w = nil, 0, 0
	}
}

// readLine returns the next CRLF-terminated line of at most max bytes, without the CRLF,
// for chunked framing. The slice is valid until the next read.
func (c *conn) readLine(max int) ([]byte, error) {
	for {
		if nl := bytes.IndexByte(c.buf[c.r:c.w], '\n'); nl >= 0 {
			if nl > max {
				return nil, errBadChunk
			}
			line, ok := crlfLine(c.buf[c.r : c.r+nl])
			if !ok {
				return nil, errBadChunk
			}
			c.r += nl + 1
			return line, nil
		}
		if c.w-c.r > max {
			return nil, errBadChunk
		}
		if c.r > 0 && c.w == len(c.buf) {
			c.w = copy(c.buf, c.buf[c.r:c.w])
			c.r = 0
		}
		if t := c.srv.BodyIdleTimeout; t > 0 {
			_ = c.nc.SetReadDeadline(time.Now().Add(t))
		}
		if err := c.fill(); err != nil {
			return nil, err
		}
	}
}

// serveRequest runs the handler for the head in c.hd; false when the connection must end.
func (c *conn) serveRequest() bool {
	hd := &c.hd
	c.minor = hd.minor
	c.handlerDone = false
	c.closeReply = hd.close
	r := &c.req
	*r = c.reqBase
	if err := c.setURL(hd); err != nil {
		c.refuse(errBadTarget)
		return false
	}
	if c.url.Host != "" && !ValidHost(c.url.Host) {
		// An absolute-form target's authority becomes Host: it gets the Host header's
		// check, or `GET http://a"><script>... HTTP/1.1` would reach the app's URLs.
		c.refuse(errBadHost)
		return false
	}
	// The header map and its values are the connection's, as the Request is: a handler
	// must not keep them past its return.
	clear(c.header)
	if cap(c.values) < len(hd.fields) {
		c.values = make([]string, 0, max(len(hd.fields), 16))
	}
	vals := c.values[:len(hd.fields)]
	for i, f := range hd.fields {
		if old, ok := c.header[f.name]; ok {
			c.header[f.name] = append(old, f.value) // a repeated field: its own array
			continue
		}
		vals[i] = f.value
		c.header[f.name] = vals[i : i+1 : i+1]
	}
	r.Method = hd.method
	r.URL = &c.url
	r.Proto, r.ProtoMajor, r.ProtoMinor = hd.proto, 1, hd.minor
	r.Header = c.header
	r.ContentLength = hd.contentLength
	r.Close = hd.close
	r.Host = hd.host
	if c.url.Host != "" {
		r.Host = c.url.Host // absolute-form: the target's authority wins over Host
	}
	r.RemoteAddr = c.remote
	r.RequestURI = hd.target
	r.TLS = c.tls
	r.Body = http.NoBody
	if hd.chunked {
		r.TransferEncoding = chunkedCoding
	}
	if hd.chunked || hd.contentLength > 0 {
		c.body.reset(c, hd.contentLength, hd.chunked, hd.expectContinue && hd.minor == 1)
		r.Body = &c.body
		if c.srv.HeaderTimeout > 0 || c.srv.IdleTimeout > 0 {
			_ = c.nc.SetReadDeadline(time.Time{}) // the body's reads set their own
		}
	} else {
		c.body.reset(c, 0, false, false)
	}
	w := &c.resp
	w.reset(c, hd.method == http.MethodHead)

	aborted := c.runHandler(w, r)
	c.handlerDone = true
	if aborted || c.hijacked {
		return false
	}
	w.finish()
	keep := !w.closeAfter && !c.body.failed()
	if keep && !c.body.done() {
		keep = c.body.discard()
		if !keep && !w.closeAfter && w.c.minor == 1 {
			// Too late to say Connection: close in the head; closing is enough.
			w.closeAfter = true
		}
	}
	out := w.pending()
	if keep && c.raw != nil && c.r == c.w && len(out) > 0 && c.srv.keepAlive() {
		// The next read writes the response first, then waits: see rawio.
		c.raw.SetPending(out...)
		return true
	}
	if len(out) > 0 {
		if err := c.send(out...); err != nil {
			return false
		}
	}
	if !keep {
		c.lingerClose()
	}
	return keep
}

var chunkedCoding = []string{"chunked"}

// setURL parses the request target into c.url, as net/http's readRequest does: the common
// origin-form of plain characters without the url package, anything else with it.
func (c *conn) setURL(hd *head) error {
	t := hd.target
	if plainOriginForm(t) {
		path, query, _ := cutByte(t, '?')
		c.url = url.URL{Path: path, RawQuery: query}
		return nil
	}
	justAuthority := hd.method == http.MethodConnect && t[0] != '/'
	if justAuthority {
		t = "http://" + t
	}
	u, err := url.ParseRequestURI(t)
	if err != nil {
		return err
	}
	if justAuthority {
		u.Scheme = ""
	}
	c.url = *u
	return nil
}

// plainOriginForm: a path and query of printable ASCII without escapes or a fragment mark,
// which url.ParseRequestURI would take as they are.
func plainOriginForm(t string) bool {
	if len(t) == 0 || t[0] != '/' {
		return false
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; c <= ' ' || c >= 0x7f || c == '%' || c == '#' {
			return false
		}
	}
	return true
}

func cutByte(s string, sep byte) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// runHandler calls the handler; true when it aborted the response (http.ErrAbortHandler,
// or a panic), which ends the connection without another byte.
func (c *conn) runHandler(w *response, r *http.Request) (aborted bool) {
	defer func() {
		if v := recover(); v != nil {
			aborted = true
			if v != http.ErrAbortHandler {
				c.srv.Log.Error().Str("panic", panicString(v)).Str("remote", c.remote).Str("stack", string(debug.Stack())).Msg("panic serving a request")
			}
			if w.committed {
				w.flushOut() // as net/http: what was written goes, then the cut
			}
		}
	}()
	c.srv.Handler.ServeHTTP(w, r)
	return false
}

func panicString(v any) string {
	if err, ok := v.(error); ok {
		return err.Error()
	}
	if s, ok := v.(string); ok {
		return s
	}
	return "non-error panic value"
}

// closeAfterReply says whether the response being committed is the connection's last.
func (c *conn) closeAfterReply() bool {
	return c.closeReply || !c.srv.keepAlive() || c.srv.shuttingDown()
}

// sendContinue answers "Expect: 100-continue" when the handler starts reading the body.
func (c *conn) sendContinue() error {
	return c.send([]byte("HTTP/1.1 100 Continue\r\n\r\n"))
}

// send writes bufs to the client now. Each write is bounded by sendTimeout without
// progress: rawio moves the deadline on as the client reads, under TLS too.
func (c *conn) send(bufs ...[]byte) error {
	if c.raw != nil {
		return c.raw.Writev(bufs...)
	}
	if len(bufs) == 1 {
		_, err := c.nc.Write(bufs[0])
		return err
	}
	// One record for TLS rather than one per part.
	var joined []byte
	for _, b := range bufs {
		joined = append(joined, b...)
	}
	_, err := c.nc.Write(joined)
	return err
}

// refuse answers a head that was refused, and closes.
func (c *conn) refuse(rej *rejection) {
	s := c.srv
	s.Log.Warn().Int("status", rej.status).Str("reason", rej.reason).Str("remote", c.remote).Msg("request refused")
	if s.OnRefused != nil {
		s.OnRefused(c.remote, rej.status, rej.reason)
	}
	text := http.StatusText(rej.status)
	b := appendStatusLine(nil, rej.status)
	b = append(b, "Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(text)+1), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, text...)
	b = append(b, '\n')
	if c.raw != nil && c.raw.HasPending() {
		_ = c.raw.Flush()
	}
	// The connection ends with this answer: a client that does not take it is not waited
	// for long.
	if c.sent != nil {
		c.sent.WriteTimeout = refuseWriteTimeout
	} else {
		_ = c.nc.SetWriteDeadline(time.Now().Add(refuseWriteTimeout))
	}
	if err := c.send(b); err == nil {
		c.lingerClose()
	}
}

const (
	refuseWriteTimeout = 5 * time.Second
	// lingerTime bounds how long a closing connection reads what the client still sends,
	// so that its unread bytes do not turn the close into a reset that could destroy the
	// response before the client read it (net/http waits 500 ms the same way).
	lingerTime = 500 * time.Millisecond
)

// lingerClose half-closes and drains the client's unread bytes for a moment: a client
// still sending a body the handler refused (413) gets to finish its write and read the
// answer, where a close at once would reset the connection under its write.
func (c *conn) lingerClose() {
	type closeWriter interface{ CloseWrite() error }
	cw, ok := c.nc.(closeWriter)
	if !ok {
		return
	}
	if err := cw.CloseWrite(); err != nil {
		return
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(lingerTime))
	_, _ = io.Copy(io.Discard, readerOnly{c.nc})
}

type readerOnly struct{ io.Reader }

func (c *conn) close() {
	if c.hijacked {
		c.cancel() // the connection is the handler's, closed by it
		return
	}
	if c.raw != nil && c.raw.HasPending() {
		_ = c.raw.Flush()
	}
	c.cancel()
	if c.h2c == nil {
		_ = c.nc.Close()
	}
	// Forgotten before the hand-over: h1's Shutdown and Close must not touch a connection
	// that net/http serves.
	c.srv.forget(c)
	if c.h2c != nil {
		c.srv.H2C(c.h2c)
	}
}
