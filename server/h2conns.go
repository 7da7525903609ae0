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
