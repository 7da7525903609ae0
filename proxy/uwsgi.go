package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/herd-server/herd/internal/rawio"
	"github.com/herd-server/herd/protocol"
)

// UwsgiServer is the uwsgi front end: it accepts uwsgi requests (nginx's uwsgi_pass, or
// any uwsgi client) and serves them through the Handler's dispatch, exactly as HTTP
// requests are served: the body is read by the master before a worker is chosen, and the
// request goes to the worker on the master's own keep-alive connection.
//
// Each connection carries one request and is closed after the response, as a plain uwsgi
// server does: nginx's uwsgi module keeps no upstream connection alive (the protocol has
// no response framing), and reads the response until the close. The worker's framed
// HTTP/1.1 answer is turned back into a raw one: status line, headers, the body de-chunked.
type UwsgiServer struct {
	Handler *Handler
	// HeadTimeout bounds the wait for the packet header and vars block: a client that
	// connects and sends nothing holds a goroutine and an fd this long at most.
	HeadTimeout time.Duration
	// BodyIdleTimeout bounds each wait for more of the request body.
	BodyIdleTimeout time.Duration
	// SendTimeout bounds how long a write of the answer may make no progress (nginx's
	// send_timeout, as h1.Server's): a front end that stops reading has its connection
	// closed and frees what the answer holds. 0: none.
	SendTimeout time.Duration

	mu        sync.Mutex
	reqBase   http.Request // carries ctx: each request starts as a copy of it
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]bool // true once the request head is read (the conn is active)
	closing   bool
	ctx       context.Context // canceled by Close: requests waiting for a worker give up
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// Modifier1 values accepted from a front end: 0 is a WSGI request; 30 is the same with
// SCRIPT_NAME to be removed from PATH_INFO (uWSGI's UWSGI_MODIFIER_MANAGE_PATH_INFO, what
// `uwsgi_modifier1 30;` in nginx asks for).
const modifierManagePathInfo = 30

// ErrServerClosed is returned by Serve once Shutdown or Close was called.
var ErrServerClosed = errors.New("uwsgi server closed")

func (s *UwsgiServer) init() {
	if s.listeners == nil {
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[net.Conn]bool{}
		s.ctx, s.cancel = context.WithCancel(context.Background())
		s.reqBase = *(&http.Request{}).WithContext(s.ctx)
	}
}

// Serve accepts connections on ln until it is closed, serving each in its own goroutine.
func (s *UwsgiServer) Serve(ln net.Listener) error {
	s.mu.Lock()
	s.init()
	if s.closing {
		s.mu.Unlock()
		_ = ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()

	backoff := time.Duration(0)
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosing() {
				return ErrServerClosed
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of fds or a transient error: wait rather than spin, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.Handler.Log.Warn().Err(err).Dur("retry_in_ms", backoff).Msg("uwsgi accept failed")
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("uwsgi accept on %s: %w", ln.Addr(), err)
		}
		backoff = 0
		if !s.track(c) {
			_ = c.Close()
			return ErrServerClosed
		}
		go s.serveConn(c)
	}
}

func (s *UwsgiServer) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

func (s *UwsgiServer) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = false
	s.wg.Add(1)
	return true
}

// activate marks c as carrying a request; false when a shutdown began meanwhile (the
// connection is then dropped as an idle one, before it reached a worker).
func (s *UwsgiServer) activate(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = true
	return true
}

func (s *UwsgiServer) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// Shutdown closes the listeners and the connections that have not sent a request yet,
// then waits for the requests in flight, or for ctx. It returns ctx's error when they did
// not finish in time; Close then cuts them.
func (s *UwsgiServer) Shutdown(ctx context.Context) error {
	s.stopAccepting(false)
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close closes the listeners and every connection at once.
func (s *UwsgiServer) Close() error {
	s.stopAccepting(true)
	return nil
}

func (s *UwsgiServer) stopAccepting(all bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	s.closing = true
	for ln := range s.listeners {
		_ = ln.Close()
	}
	for c, active := range s.conns {
		if all || !active {
			_ = c.Close()
		}
	}
	if all {
		s.cancel()
	}
}

// uwsgiExchange is what serving one connection needs, kept from one connection to the
// next: nginx opens a connection per request, and making these anew was most of the
// master's allocations on that path.
type uwsgiExchange struct {
	br   *bufio.Reader
	w    rawResponseWriter
	req  http.Request
	url  url.URL
	rec  Record
	idle idleDeadlineReader
	body io.LimitedReader
}

var exchanges = sync.Pool{New: func() any {
	return &uwsgiExchange{
		br: bufio.NewReaderSize(nil, 4096),
		w:  rawResponseWriter{bw: bufio.NewWriterSize(nil, 4096), header: http.Header{}},
	}
}}

// release empties x (no reference to the connection or request survives) and pools it.
func (x *uwsgiExchange) release() {
	x.br.Reset(nil)
	x.w.bw.Reset(nil)
	clear(x.w.header)
	x.w = rawResponseWriter{bw: x.w.bw, header: x.w.header}
	x.req, x.url, x.rec, x.idle, x.body = http.Request{}, url.URL{}, Record{}, idleDeadlineReader{}, io.LimitedReader{}
	exchanges.Put(x)
}

// serveConn serves the one request of a connection.
func (s *UwsgiServer) serveConn(c net.Conn) {
	defer s.untrack(c)
	h := s.Handler
	start := time.Now()
	// Reads and writes go through rawio (no entersyscall per call, so the runtime's sysmon
	// is not kept awake; see internal/rawio) where c has a descriptor; deadlines still hold.
	var rw io.ReadWriter = c
	if raw, ok := rawio.Get(c); ok {
		raw.WriteTimeout = s.SendTimeout
		rw = raw
		defer rawio.Put(raw) // after the Close below: deferred calls run last-in first-out
	}
	defer c.Close()
	x := exchanges.Get().(*uwsgiExchange)
	defer x.release() // after the response's flush and the OnDone hooks
	br := x.br
	br.Reset(rw)
	_ = c.SetReadDeadline(start.Add(s.HeadTimeout))
	head, err := readHead(br)
	if err != nil {
		if !errors.Is(err, io.EOF) {
			h.Log.Debug().Err(err).Str("remote", c.RemoteAddr().String()).Msg("uwsgi request refused")
		}
		return
	}
	if !s.activate(c) {
		return
	}
	front, err := frontEndVars(head.vars, head.modifier1)
	r := &x.req
	front.fill(r, &x.url, &s.reqBase, c)
	rec := &x.rec
	*rec = Record{Request: r, Start: start, Worker: -1}
	if h.OnDone != nil {
		defer func() {
			rec.Duration = time.Since(rec.Start)
			h.OnDone(rec)
		}()
	}
	w := &x.w
	w.conn = c
	w.bw.Reset(rw)
	defer w.finish()
	if err != nil {
		rec.Status = h.fail(w, r, err)
		return
	}
	vars, mounted := mountVars(front.vars, h.Mount)
	if !mounted {
		rec.Status = h.fail(w, r, errNotMounted)
		return
	}
	x.idle = idleDeadlineReader{conn: c, r: br, idle: s.BodyIdleTimeout}
	x.body = io.LimitedReader{R: &x.idle, N: front.contentLength}
	body, err := h.readBodyFrom(&x.body, front.contentLength)
	if err != nil {
		rec.Status = h.fail(w, r, err)
		return
	}
	defer body.Close()
	// The app may take its time: from here on only the worker's answer is waited for.
	_ = c.SetReadDeadline(time.Time{})
	if err := h.forward(w, r, vars, body, rec); errors.Is(err, errAborted) {
		w.abort()
	}
}

// uwsgiHead is a request's packet header and vars block as the front end sent them.
type uwsgiHead struct {
	modifier1 uint8
	vars      []protocol.Var
}

func readHead(br *bufio.Reader) (uwsgiHead, error) {
	var hb [protocol.HeaderSize]byte
	if _, err := io.ReadFull(br, hb[:]); err != nil {
		return uwsgiHead{}, err
	}
	hdr, err := protocol.ParseHeader(hb[:])
	if err != nil {
		return uwsgiHead{}, err
	}
	// modifier2 is ignored: it is the master's private keep-alive signal to its workers,
	// and a front end's value must not reach them.
	if hdr.Modifier1 != protocol.ModifierWSGI && hdr.Modifier1 != modifierManagePathInfo {
		return uwsgiHead{}, fmt.Errorf("%w: modifier1 %d is not a WSGI request", errBadRequest, hdr.Modifier1)
	}
	block := make([]byte, hdr.DataSize)
	if _, err := io.ReadFull(br, block); err != nil {
		return uwsgiHead{}, fmt.Errorf("%w: vars block: %w", errBadRequest, err)
	}
	vars, err := protocol.DecodeVars(block)
	if err != nil {
		return uwsgiHead{}, fmt.Errorf("%w: %w", errBadRequest, err)
	}
	return uwsgiHead{modifier1: hdr.Modifier1, vars: vars}, nil
}

// frontRequest is a front end's request as the master forwards it.
type frontRequest struct {
	vars          []protocol.Var
	contentLength int64
}

// frontEndVars filters the vars a front end sent into the ones forwarded to a worker. No
// I/O. The rules:
//   - A repeated key keeps its last value (as the worker would), so that the master frames
//     and routes the request by the same values the app sees.
//   - Every UWSGI_* var is dropped: UWSGI_FILE, UWSGI_SCRIPT, UWSGI_MODULE, UWSGI_CHDIR and
//     the like would tell uWSGI what code to load; herd never obeys them. The master sets
//     UWSGI_SCHEME itself, from the front end's UWSGI_SCHEME when it is http or https
//     (uWSGI's own rule), else https when HTTPS is on, 1 or true (nginx's uwsgi_params
//     sends `HTTPS $https if_not_empty`), else http.
//   - The body is framed by CONTENT_LENGTH only; an empty one (nginx's GET) means no body
//     and is dropped, as is an empty CONTENT_TYPE. HTTP_TRANSFER_ENCODING is dropped: nginx
//     has de-chunked the body and sends its length, so "chunked" is no longer true of it.
//   - With modifier1 30, SCRIPT_NAME is removed from the front of PATH_INFO.
//
// An error means a request no front end sends: a CONTENT_LENGTH that is not a number.
func frontEndVars(in []protocol.Var, modifier1 uint8) (frontRequest, error) {
	var out frontRequest
	scheme, https := "", false
	// A packet holds up to 16000 vars: past a few dozen the keys are looked up in a map,
	// not by a scan of what is kept so far (7000 vars cost the master 200 ms of CPU that
	// way); see varSet.
	set := newVarSet(in)
	for _, v := range in {
		switch {
		case strings.HasPrefix(v.Key, "UWSGI_"):
			if v.Key == "UWSGI_SCHEME" {
				scheme = v.Value
			}
			continue
		case v.Key == "HTTP_TRANSFER_ENCODING":
			continue
		case v.Key == "HTTPS":
			https = isOn(v.Value)
		case v.Key == "CONTENT_TYPE" && v.Value == "":
			set.drop(v.Key)
			continue
		case v.Key == "CONTENT_LENGTH":
			set.drop(v.Key)
			out.contentLength = 0
			if v.Value == "" {
				continue
			}
			n, err := strconv.ParseInt(v.Value, 10, 64)
			if err != nil || n < 0 || v.Value[0] == '+' {
				out.vars = set.vars()
				return out, fmt.Errorf("%w: CONTENT_LENGTH %.40q", errBadRequest, v.Value)
			}
			out.contentLength = n
		}
		set.set(v)
	}
	out.vars = set.vars()
	if scheme != "http" && scheme != "https" {
		scheme = "http"
		if https {
			scheme = "https"
		}
	}
	out.vars = append(out.vars, protocol.Var{Key: "UWSGI_SCHEME", Value: scheme})
	if modifier1 == modifierManagePathInfo {
		stripScriptName(out.vars)
	}
	return out, nil
}

func isOn(v string) bool {
	return strings.EqualFold(v, "on") || v == "1" || strings.EqualFold(v, "true")
}

// varSet keeps one var per key: a key set again takes the new value in its first place,
// a dropped key leaves its place (and may come back at the end). It filters the decoded
// vars in place (a var is written at or before the place it was read from), and looks keys
// up by a scan while they are few (nginx sends about fifteen): no allocation for a request
// from nginx. A dropped var is marked by an empty key, which no decoded var has.
type varSet struct {
	list  []protocol.Var
	index map[string]int // key -> place in list, for keys present; only past scanLimit vars
}

// scanLimit: up to this many vars a scan finds a key faster than a map that has to be made.
const scanLimit = 32

func newVarSet(in []protocol.Var) varSet {
	s := varSet{list: in[:0]}
	if len(in) > scanLimit {
		s.index = make(map[string]int, len(in))
	}
	return s
}

func (s *varSet) find(key string) int {
	if s.index != nil {
		if i, ok := s.index[key]; ok {
			return i
		}
		return -1
	}
	for i := range s.list {
		if s.list[i].Key == key {
			return i
		}
	}
	return -1
}

func (s *varSet) set(v protocol.Var) {
	if i := s.find(v.Key); i >= 0 {
		s.list[i].Value = v.Value
		return
	}
	if s.index != nil {
		s.index[v.Key] = len(s.list)
	}
	s.list = append(s.list, v)
}

func (s *varSet) drop(key string) {
	if i := s.find(key); i >= 0 {
		s.list[i].Key = ""
		if s.index != nil {
			delete(s.index, key)
		}
	}
}

// vars returns the kept vars in order.
func (s *varSet) vars() []protocol.Var {
	out := s.list[:0]
	for _, v := range s.list {
		if v.Key != "" {
			out = append(out, v)
		}
	}
	return out
}

// fill makes r the *http.Request the shared dispatch and the OnDone hooks see for a uwsgi
// request: method, path, query and remote address as the front end gave them. base carries
// the server's context; u becomes r.URL.
func (f frontRequest) fill(r *http.Request, u *url.URL, base *http.Request, c net.Conn) {
	get := func(key string) string {
		if i := varIndex(f.vars, key); i >= 0 {
			return f.vars[i].Value
		}
		return ""
	}
	method := get("REQUEST_METHOD")
	if method == "" {
		method = http.MethodGet
	}
	var remote string
	if addr := get("REMOTE_ADDR"); addr != "" {
		remote = net.JoinHostPort(addr, get("REMOTE_PORT"))
	} else {
		remote = c.RemoteAddr().String()
	}
	uri := get("REQUEST_URI")
	if uri == "" {
		uri = get("PATH_INFO")
	}
	*u = url.URL{Path: get("SCRIPT_NAME") + get("PATH_INFO"), RawQuery: get("QUERY_STRING")}
	*r = *base
	r.Method = method
	r.URL = u
	r.RequestURI = uri
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	r.Header = emptyHeader
	r.Host = get("HTTP_HOST")
	r.RemoteAddr = remote
}

// emptyHeader is every uwsgi request's Header: the headers are in the vars, and nothing on
// this path writes to it.
var emptyHeader = http.Header{}

// idleDeadlineReader reads a request body, giving each read its own deadline: a client
// that sends slowly but steadily gets its body through, one that stops is dropped.
type idleDeadlineReader struct {
	conn net.Conn
	r    io.Reader
	idle time.Duration
}

func (d *idleDeadlineReader) Read(p []byte) (int, error) {
	if d.idle > 0 {
		_ = d.conn.SetReadDeadline(time.Now().Add(d.idle))
	}
	return d.r.Read(p)
}

// rawResponseWriter writes a response as a plain uwsgi server does: an HTTP/1.1 status
// line, the headers and the body as it is, ended by closing the connection.
type rawResponseWriter struct {
	conn    net.Conn
	bw      *bufio.Writer
	header  http.Header
	wrote   bool
	aborted bool // what is buffered is dropped: the connection is cut
}

func (w *rawResponseWriter) Header() http.Header { return w.header }

func (w *rawResponseWriter) WriteHeader(status int) {
	if w.wrote {
		return
	}
	w.wrote = true
	fmt.Fprintf(w.bw, "HTTP/1.1 %03d %s\r\n", status, http.StatusText(status))
	_ = w.header.Write(w.bw)
	_, _ = w.bw.WriteString("\r\n")
}

func (w *rawResponseWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.bw.Write(p)
}

// Flush sends what is buffered: a streamed response goes out part by part.
func (w *rawResponseWriter) Flush() { _ = w.bw.Flush() }

func (w *rawResponseWriter) finish() {
	if !w.aborted {
		_ = w.bw.Flush()
	}
}

// abort ends a response that broke after its head: a TCP reset (not a clean close) tells
// nginx that the body is not whole, and nothing buffered is sent.
func (w *rawResponseWriter) abort() {
	w.aborted = true
	// An interface, not *net.TCPConn: the connection may come wrapped (--max-connections).
	if tc, ok := w.conn.(interface{ SetLinger(int) error }); ok {
		_ = tc.SetLinger(0)
	}
}
