package proxy

import (
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/herd-server/herd/proxy/h1"
)

// HTTP2Guard keeps on the requests that come over HTTP/2 (net/http's server) the bounds
// herd's HTTP/1 server keeps on its own: gunicorn's limits on the request line and the
// header fields (414, 431), the body-idle timeout, and the send timeout. Its Handler wraps
// what the HTTP/2 server serves; HTTP/1 requests never pass through it.
type HTTP2Guard struct {
	Limits h1.Limits
	// BodyIdleTimeout bounds each wait for more of a request body: the stream of a client
	// that stops sending the body it announced is given up (the read fails). 0: none.
	BodyIdleTimeout time.Duration
	// SendTimeout bounds each write of an answer that makes no progress, for instance on a
	// stream the client gives no flow-control window: the stream is reset and the write
	// fails, so the worker streaming to it or the spool holding its answer is let go.
	// 0: none.
	SendTimeout time.Duration
	// OnRefused, when set, hears each request refused by the limits (as h1.Server's).
	OnRefused func(remote string, status int, reason string)
	Log       zerolog.Logger
}

// Handler returns next behind the guard.
func (g *HTTP2Guard) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if status, reason := g.Limits.CheckFields(r.Method, r.RequestURI, r.Host, r.Header); status != 0 {
			g.Log.Warn().Int("status", status).Str("reason", reason).Str("remote", r.RemoteAddr).Str("proto", r.Proto).Msg("request refused")
			if g.OnRefused != nil {
				g.OnRefused(r.RemoteAddr, status, reason)
			}
			writeShortStatus(w, status)
			return
		}
		rc := http.NewResponseController(w)
		if g.BodyIdleTimeout > 0 && r.Body != nil && r.Body != http.NoBody {
			r.Body = &idleBody{ReadCloser: r.Body, rc: rc, idle: g.BodyIdleTimeout}
		}
		if g.SendTimeout > 0 {
			tw := &timedWriter{ResponseWriter: w, rc: rc, timeout: g.SendTimeout}
			defer tw.stop()
			w = tw
		}
		next.ServeHTTP(w, r)
	})
}

// idleBody gives each read of an HTTP/2 request body its own deadline, BodyIdleTimeout
// ahead: a client that sends slowly but steadily gets its body through, one that stops is
// dropped, as herd's HTTP/1 server does (h1.Server.BodyIdleTimeout).
type idleBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
}

func (b *idleBody) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(time.Now().Add(b.idle))
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		_ = b.rc.SetReadDeadline(time.Time{}) // the body is over: the app may take its time
	}
	return n, err
}

// timedWriter bounds each write of an HTTP/2 answer by its progress: a write that takes
// more than timeout resets the stream (a deadline in the past does that at once), which
// fails the write. Only while a write is in progress: an event stream may be quiet for
// minutes between two writes. A write goes in pieces of sendPiece bytes, each with its own
// timeout, so a large one is bounded by its progress, not by its whole length.
type timedWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration

	mu    sync.Mutex // the timer's callback may run as the handler stops it
	timer *time.Timer
}

// sendPiece is how much of an answer an HTTP/2 client must take within each timeout.
const sendPiece = 64 << 10

func (w *timedWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		piece := p[:min(len(p), sendPiece)]
		w.start()
		m, err := w.ResponseWriter.Write(piece)
		w.stop()
		n += m
		if err != nil {
			return n, err
		}
		p = p[m:]
	}
	return n, nil
}

// Flush sends what was written, within the timeout too: it waits for flow control as a
// write does.
func (w *timedWriter) Flush() { _ = w.FlushError() }

func (w *timedWriter) FlushError() error {
	w.start()
	defer w.stop()
	return w.rc.Flush()
}

// Unwrap lets http.ResponseController reach the HTTP/2 writer.
func (w *timedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *timedWriter) start() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.timer == nil {
		w.timer = time.AfterFunc(w.timeout, w.expire)
		return
	}
	w.timer.Reset(w.timeout)
}

func (w *timedWriter) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.timer != nil {
		w.timer.Stop()
	}
}

// expire resets the stream: net/http's HTTP/2 does that for a write deadline in the past.
func (w *timedWriter) expire() { _ = w.rc.SetWriteDeadline(time.Unix(1, 0)) }
