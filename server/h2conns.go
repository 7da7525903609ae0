package server

import (
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/herd-server/herd/proxy"
)

// connQueue is a net.Listener fed by hand: the connections herd's HTTP/1 server hands on
// go through it to net/http's HTTP/2 server, which takes them as any listener's. They are
// the TLS connections h1 handshook and that negotiated h2 (a *tls.Conn with h2 is served
// as HTTP/2), and with --h2c the plain ones that opened with HTTP/2's preface (read again
// from their first byte: net/http's UnencryptedHTTP2 sees the preface and serves h2c).
type connQueue struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newConnQueue() *connQueue {
	return &connQueue{conns: make(chan net.Conn), closed: make(chan struct{})}
}

// push hands c over, or closes it when the queue is closed.
func (q *connQueue) push(c net.Conn) {
	select {
	case q.conns <- c:
	case <-q.closed:
		_ = c.Close()
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.conns:
		return c, nil
	case <-q.closed:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.closed) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return queueAddr{} }

type queueAddr struct{}

func (queueAddr) Network() string { return "h2" }
func (queueAddr) String() string  { return "h2" }

// refusedLogger makes the access log and the metrics hear about a head the HTTP/1 server
// refused: it never became a request, so method, path and URI show as "-".
func refusedLogger(onDone func(*proxy.Record)) func(remote string, status int, reason string) {
	if onDone == nil {
		return nil
	}
	return func(remote string, status int, _ string) {
		r := &http.Request{Method: "-", URL: &url.URL{Path: "-"}, RequestURI: "-", RemoteAddr: remote,
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{}}
		onDone(&proxy.Record{Request: r, Start: time.Now(), Status: status, Worker: -1})
	}
}

// firstRequest closes an HTTP/2 connection whose first request has not come whole within
// --header-timeout, as h1 closes a connection whose first head has not: net/http's HTTP/2
// server bounds the preface (10 s), then only the idle time (--keep-alive). Its ConnState
// hook hears StateNew when net/http takes the connection; HTTP/2 then says StateActive and
// StateIdle at once as it starts serving, and StateActive again when the first stream's
// header block is whole: that ends the timer (as StateClosed does).
type firstRequest struct {
	timeout time.Duration
	next    func(net.Conn, http.ConnState)

	mu    sync.Mutex
	conns map[net.Conn]*awaited
}

// awaited is a connection whose first request has not come.
type awaited struct {
	timer *time.Timer
	idle  bool // HTTP/2 has begun serving it
}

// firstRequestHook returns the ConnState hook: next's, with the timer before it.
func firstRequestHook(timeout time.Duration, next func(net.Conn, http.ConnState)) func(net.Conn, http.ConnState) {
	if timeout <= 0 {
		return next
	}
	f := &firstRequest{timeout: timeout, next: next, conns: map[net.Conn]*awaited{}}
	return f.connState
}

func (f *firstRequest) connState(c net.Conn, st http.ConnState) {
	f.mu.Lock()
	a := f.conns[c]
	switch {
	case st == http.StateNew:
		f.conns[c] = &awaited{timer: time.AfterFunc(f.timeout, func() { _ = c.Close() })}
	case a == nil:
	case st == http.StateIdle:
		a.idle = true
	case st == http.StateActive && a.idle, st == http.StateClosed, st == http.StateHijacked:
		a.timer.Stop()
		delete(f.conns, c)
	}
	f.mu.Unlock()
	f.next(c, st)
}
