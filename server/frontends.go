package server

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/herd-server/herd/config"
	"github.com/herd-server/herd/internal/listener"
	"github.com/herd-server/herd/proxy"
	"github.com/herd-server/herd/proxy/h1"
)

// listenerSet is every listening socket of the master, by what it serves.
type listenerSet struct {
	http  []net.Listener // herd's HTTP/1 server (handing cleartext HTTP/2 on with --h2c)
	https []net.Listener // TLS: HTTP/1.1 through herd's server, h2 through net/http
	uwsgi []net.Listener // the uwsgi front end, for nginx's uwsgi_pass
	admin net.Listener   // nil without --admin
}

func (l *listenerSet) all() []net.Listener {
	out := append(append(append([]net.Listener{}, l.http...), l.https...), l.uwsgi...)
	if l.admin != nil {
		out = append(out, l.admin)
	}
	return out
}

// limit puts the client listeners under the one connection bound; the admin one stays out.
func (l *listenerSet) limit(lim *listener.Limit) {
	l.http, l.https, l.uwsgi = limitAll(lim, l.http), limitAll(lim, l.https), limitAll(lim, l.uwsgi)
}

// openListeners opens the HTTP, uwsgi, HTTPS and admin listeners (or takes them from
// systemd or a USR2 parent, through the deployment). On failure none is left open.
func openListeners(cfg *config.Config, dep *deployment, haveCert bool) (listenerSet, error) {
	var l listenerSet
	var err error
	if l.http, l.uwsgi, err = dep.listeners(cfg); err != nil {
		return l, err
	}
	l.https, err = dep.httpsListeners(cfg)
	if err == nil && len(l.https) > 0 && !haveCert {
		closeAll(l.https)
		l.https = nil
		err = errNoCert // a socket passed as "https" without --https --cert --key
	}
	if err == nil && cfg.Admin != "" {
		l.admin, err = dep.adminListener(cfg)
	}
	if err != nil {
		closeAll(l.all())
		return listenerSet{}, err
	}
	return l, nil
}

// frontHandler is what the front ends serve: http for the HTTP and HTTPS ones (static files,
// metrics, the development error page in front of the proxy), uwsgi for nginx's.
type frontHandler struct {
	http  http.Handler
	uwsgi *proxy.Handler
}

// How long a uwsgi client may take to send its request head (nginx sends the head at once
// with the connection).
const uwsgiHeadTimeout = 10 * time.Second

// frontEnds are the HTTP (and HTTPS) and the uwsgi servers, stopped together.
type frontEnds struct {
	http    *http.Server // HTTP/2 only: what h1 hands on through h2conns
	h1      *h1.Server
	h2conns *connQueue // connections h1 hands to http (see connQueue)
	uwsgi   *proxy.UwsgiServer
	conns   *connTracker
	lns     listenerSet
	h2c     bool
}

// newFrontEnds makes the servers: every connection on --http and --https goes through
// herd's own server (proxy/h1), which serves HTTP/1.x and hands HTTP/2 on to net/http: a
// TLS connection once ALPN chose h2, and with --h2c a cleartext one that opens with
// HTTP/2's preface.
func newFrontEnds(cfg *config.Config, front *frontHandler, onDone func(*proxy.Record), certs *certStore, lns listenerSet, log zerolog.Logger) frontEnds {
	limits := h1.Limits{RequestLine: cfg.LimitRequestLine, Fields: cfg.LimitRequestFields, FieldSize: cfg.LimitRequestFieldSize}
	conns := &connTracker{}
	// HTTP/2 gets the bounds h1 keeps on HTTP/1 itself: field limits, body idle, send.
	guard := &proxy.HTTP2Guard{Limits: limits, BodyIdleTimeout: cfg.BodyTimeout, SendTimeout: cfg.SendTimeout,
		OnRefused: refusedLogger(onDone), Log: log.With().Str("component", "http2").Logger()}
	srv := &http.Server{
		Handler: guard.Handler(conns.handler(front.http)),
		// The first request within --header-timeout, as h1's first head (slowloris).
		ConnState:         firstRequestHook(cfg.HeaderTimeout, conns.connState),
		ReadHeaderTimeout: cfg.HeaderTimeout,
		// An HTTP/2 header list may be as large as an HTTP/1 head (gunicorn's limits, or
		// what a uwsgi packet carries), with room: HTTP/2 counts 32 bytes more per field
		// (RFC 9113 6.5.2). Over it: 431.
		MaxHeaderBytes: limits.MaxHead() + 4096,
		IdleTimeout:    cfg.KeepAlive,
		ErrorLog:       newStdLogger(log.With().Str("component", "http").Logger()),
		Protocols:      httpProtocols(cfg.H2C),
		// A connection whose client takes no bytes at all: its streams' writes wait for the
		// connection, which this closes (TLS ones have h1's rawio under them too).
		HTTP2: &http.HTTP2Config{WriteByteTimeout: cfg.SendTimeout},
	}
	h1srv := &h1.Server{
		Handler:         conns.handler(front.http),
		Limits:          limits,
		HeaderTimeout:   cfg.HeaderTimeout,
		IdleTimeout:     cfg.KeepAlive,
		BodyIdleTimeout: cfg.BodyTimeout,
		SendTimeout:     cfg.SendTimeout,
		Log:             log.With().Str("component", "http").Logger(),
		ConnState:       conns.connState,
		OnRefused:       refusedLogger(onDone),
	}
	h2conns := newConnQueue()
	if certs != nil {
		srv.TLSConfig = certs.tlsConfig()
		h1srv.TLSConfig = certs.tlsConfig()
		h1srv.NextProto = map[string]func(*tls.Conn){"h2": func(c *tls.Conn) { h2conns.push(c) }}
	}
	if cfg.H2C {
		// HTTP/1 on these listeners stays h1's, with its checks and limits; only what
		// opens with HTTP/2's preface goes to net/http.
		h1srv.H2C = h2conns.push
	}
	if cfg.KeepAlive == 0 {
		srv.SetKeepAlivesEnabled(false) // gunicorn's --keep-alive 0
		h1srv.SetKeepAlivesEnabled(false)
	}
	uwsgiSrv := &proxy.UwsgiServer{Handler: front.uwsgi, HeadTimeout: uwsgiHeadTimeout, BodyIdleTimeout: cfg.BodyTimeout,
		SendTimeout: cfg.SendTimeout}
	return frontEnds{http: srv, h1: h1srv, h2conns: h2conns, uwsgi: uwsgiSrv, conns: conns, lns: lns, h2c: cfg.H2C}
}

// serve starts one goroutine per listener, counted in wg; each ends when its listener
// closes.
func (f frontEnds) serve(wg *sync.WaitGroup, log zerolog.Logger) {
	run := func(ln net.Listener, what string, serve func(net.Listener) error, closed ...error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := serve(ln)
			for _, c := range closed {
				if errors.Is(err, c) {
					return
				}
			}
			if err != nil && !(f.conns.closing.Load() && errors.Is(err, net.ErrClosed)) {
				log.Error().Err(err).Str("listen", ln.Addr().String()).Msg(what + " listener failed")
			}
		}()
	}
	for _, ln := range f.lns.uwsgi {
		run(ln, "uwsgi", f.uwsgi.Serve, proxy.ErrServerClosed)
	}
	// HTTP/1.x, plain or over TLS, is herd's own server, with its request checks; a TLS
	// connection that negotiated h2, or with --h2c a plain one that opened with HTTP/2's
	// preface, goes to net/http through h2conns.
	for _, ln := range f.lns.http {
		run(ln, "http", f.h1.Serve, h1.ErrServerClosed)
	}
	for _, ln := range f.lns.https {
		run(ln, "https", f.h1.ServeTLS, h1.ErrServerClosed)
	}
	if f.http.TLSConfig != nil || f.h2c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = f.http.Serve(f.h2conns) // ends when the queue closes (Shutdown or Close)
		}()
	}
}

// BeginClosing makes every later response close its connection.
func (f frontEnds) BeginClosing() { f.conns.closing.Store(true) }

// StopAccepting closes the HTTP listeners and lingers (at most max) until the keep-alive
// clients have taken a last answer and gone.
func (f frontEnds) StopAccepting(max time.Duration, abort <-chan struct{}) {
	f.conns.closing.Store(true)
	for _, ln := range f.lns.http {
		_ = ln.Close()
	}
	for _, ln := range f.lns.https {
		_ = ln.Close()
	}
	f.conns.linger(max, abort)
}

// Close stops every server at once.
func (f frontEnds) Close() error {
	_ = f.h2conns.Close()
	return errors.Join(f.http.Close(), f.h1.Close(), f.uwsgi.Close())
}

// Shutdown drains every server at once; each closes its listeners first.
func (f frontEnds) Shutdown(ctx context.Context) error {
	uwsgiDone := make(chan error, 1)
	go func() { uwsgiDone <- f.uwsgi.Shutdown(ctx) }()
	h1Done := make(chan error, 1)
	go func() { h1Done <- f.h1.Shutdown(ctx) }()
	_ = f.h2conns.Close()
	return errors.Join(f.http.Shutdown(ctx), <-h1Done, <-uwsgiDone)
}

// httpProtocols are what net/http speaks: HTTP/2 over TLS (ALPN), and cleartext HTTP/2
// with prior knowledge only when --h2c asks for it. Never HTTP/1: every HTTP/1 request is
// h1's, so that one grammar judges them all; a connection h1 handed on that is not HTTP/2
// after all is closed.
func httpProtocols(h2c bool) *http.Protocols {
	p := &http.Protocols{}
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(h2c)
	return p
}

// stdLogWriter sends net/http's internal log lines (TLS handshake errors and the like) to
// zerolog.
type stdLogWriter struct{ log zerolog.Logger }

func (w stdLogWriter) Write(p []byte) (int, error) {
	w.log.Warn().Msg(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var _ io.Writer = stdLogWriter{}

func newStdLogger(log zerolog.Logger) *stdlog.Logger {
	return stdlog.New(stdLogWriter{log}, "", 0)
}
