// Package h1 is herd's HTTP/1: the one grammar every HTTP/1 head and body herd reads goes
// through, and the server every HTTP/1.x request comes in by.
//
// It owns the reading of a client's request (parse.go, body.go) and of a worker's answer
// (answer.go), both by the rules of grammar.go, and the HTTP/1.x server of every --http and
// --https listener (server.go, conn.go, response.go). HTTP/2 it hands on to net/http: a TLS
// connection that negotiated h2 (NextProto), and with --h2c a cleartext one that opens with
// HTTP/2's preface (H2C). No other code of herd parses HTTP/1; h1 knows nothing of workers
// or pools (a worker's answer is bytes on a bufio.Reader to it).
//
// Why not net/http's server: on the 2-core machines herd is measured on, net/http cost the
// master more CPU per proxied hello request than everything else it does (its
// per-request allocations, the background read that watches for a client leaving, a
// flush per response, the runtime's sysmon woken by every blocking system call). This
// server does the least a keep-alive HTTP/1.1 exchange needs: one read of the head into a
// reused buffer, a parse that also enforces herd's request-smuggling rules, a reused
// http.Request, and one write of the whole response, made inside the next read's poll (see
// internal/rawio). It serves any http.Handler, so herd's handlers work on it and on
// net/http (HTTP/2) alike.
//
// What it does not do, by design: HTTP/2 itself, trailers (read past and
// dropped), a background read per request (a client that leaves while its request is
// served is noticed when the answer is written; see ClientGone for one that leaves while
// it waits for a worker), and Content-Type sniffing (an app's response goes out with the
// headers the app gave, as uWSGI and gunicorn send it). Hijack is there for WebSocket
// upgrades (hijack.go).
package h1

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/herd-server/herd/internal/rawio"
)

// Server serves HTTP/1.x connections with Handler.
type Server struct {
	Handler http.Handler
	Limits  Limits
	// HeaderTimeout bounds a connection's first head from the accept, and each later head
	// from its first byte (then 408); 0 means none. Slowloris.
	HeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that sends no new request for this long;
	// 0 means none.
	IdleTimeout time.Duration
	// BodyIdleTimeout bounds each wait for more of a request body: a client that stops
	// sending its body mid-way is dropped (the handler sees a read error), one that sends
	// slowly but steadily is not. 0 means none.
	BodyIdleTimeout time.Duration
	// SendTimeout bounds how long a write to a client may make no progress (nginx's
	// send_timeout): a client that stops reading its answer has its connection closed and
	// the handler's write fails, so nothing it holds (a worker streaming to it, a spool
	// file) is held longer. It restarts after each partial write: a slow but steady reader
	// is not cut. 0 means none.
	SendTimeout time.Duration
	Log         zerolog.Logger
	// ConnState, when set, hears StateNew and StateClosed of each connection.
	ConnState func(net.Conn, http.ConnState)
	// OnRefused, when set, hears every head refused with an error status, for the access log
	// and the metrics.
	OnRefused func(remote string, status int, reason string)
	// TLSConfig is used by ServeTLS; its NextProtos say what ALPN offers.
	TLSConfig *tls.Config
	// NextProto takes over a TLS connection that negotiated one of its protocols ("h2").
	NextProto map[string]func(*tls.Conn)
	// H2C, when set, takes over a plain connection that opens with HTTP/2's client preface
	// (cleartext HTTP/2 with prior knowledge, --h2c), for net/http's HTTP/2 server: reading
	// it gives the preface and whatever followed it first. Without H2C the preface is
	// refused with 400, as a request line that is not HTTP/1.
	H2C func(net.Conn)

	disableKeepAlives atomic.Bool
	closing           atomic.Bool
	maxHead           int
	initOnce          sync.Once

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	wg        sync.WaitGroup
	ctx       context.Context
	cancel    context.CancelFunc
}

// ErrServerClosed is returned by Serve and ServeTLS after Shutdown or Close.
var ErrServerClosed = errors.New("h1: server closed")

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.maxHead = s.Limits.MaxHead()
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[*conn]struct{}{}
		s.ctx, s.cancel = context.WithCancel(context.Background())
	})
}

func (s *Server) baseContext() context.Context { return s.ctx }

// SetKeepAlivesEnabled(false) makes every response close its connection (gunicorn's
// --keep-alive 0).
func (s *Server) SetKeepAlivesEnabled(on bool) { s.disableKeepAlives.Store(!on) }

func (s *Server) keepAlive() bool { return !s.disableKeepAlives.Load() }

func (s *Server) shuttingDown() bool { return s.closing.Load() }

// Serve accepts plain connections on ln until it is closed.
func (s *Server) Serve(ln net.Listener) error {
	return s.acceptLoop(ln, func(nc net.Conn) {
		s.serveConn(nc)
	})
}

// ServeTLS accepts connections on ln, completes their TLS handshake with TLSConfig, and
// serves HTTP/1.x on them or hands them to NextProto by ALPN.
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.TLSConfig == nil {
		return errors.New("h1: ServeTLS without a TLSConfig")
	}
	return s.acceptLoop(ln, func(nc net.Conn) {
		// The TLS records go out through rawio: its progress-based SendTimeout (see conn's
		// sent), for HTTP/1.1 and for the HTTP/2 handed on alike.
		under := nc
		if raw, ok := rawio.New(nc); ok {
			raw.WriteTimeout = s.SendTimeout
			under = raw
		}
		tc := tls.Server(under, s.TLSConfig)
		timeout := s.HeaderTimeout
		if timeout <= 0 {
			timeout = defaultHandshakeTimeout
		}
		ctx, cancel := context.WithTimeout(s.ctx, timeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			s.Log.Debug().Err(err).Str("remote", nc.RemoteAddr().String()).Msg("TLS handshake failed")
			_ = tc.Close()
			return
		}
		if next := s.NextProto[tc.ConnectionState().NegotiatedProtocol]; next != nil {
			next(tc)
			return
		}
		s.serveConn(tc)
	})
}

// defaultHandshakeTimeout bounds a TLS handshake when no header timeout is set.
const defaultHandshakeTimeout = 10 * time.Second

func (s *Server) acceptLoop(ln net.Listener, serve func(net.Conn)) error {
	s.init()
	if !s.track(ln) {
		_ = ln.Close()
		return ErrServerClosed
	}
	defer s.untrack(ln)
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
				errors.Is(err, syscall.ECONNABORTED) {
				// Out of fds, or a connection gone before it was taken: wait, do not spin.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.Log.Warn().Err(err).Dur("retry_in_ms", backoff).Msg("accept failed")
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
		}
		backoff = 0
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			serve(nc)
		}()
	}
}

// serveConn serves one connection until it ends.
func (s *Server) serveConn(nc net.Conn) {
	c := newConn(s, nc)
	if !s.remember(c) {
		_ = nc.Close()
		c.cancel()
		return
	}
	if s.ConnState != nil {
		s.ConnState(nc, http.StateNew)
	}
	c.serve()
}

func (s *Server) track(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	s.listeners[ln] = struct{}{}
	return true
}

func (s *Server) untrack(ln net.Listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.listeners, ln)
}

func (s *Server) remember(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

// forget is called by a connection as it closes.
func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	if s.ConnState != nil {
		st := http.StateClosed
		if c.h2c != nil {
			st = http.StateHijacked // open still, and served by another
		}
		s.ConnState(c.nc, st)
	}
}

// Shutdown stops accepting, closes idle connections as they become idle (every response
// from now on says Connection: close), and waits for the rest, or for ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.closing.Store(true)
	s.closeListeners()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.closeIdle() == 0 {
			s.wg.Wait()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Close stops accepting and closes every connection at once.
func (s *Server) Close() error {
	s.init()
	s.closing.Store(true)
	s.closeListeners()
	s.cancel() // requests waiting for a worker give up
	s.mu.Lock()
	for c := range s.conns {
		_ = c.nc.Close()
	}
	s.mu.Unlock()
	return nil
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ln := range s.listeners {
		_ = ln.Close()
	}
}

// closeIdle closes the idle connections and returns how many connections remain open.
func (s *Server) closeIdle() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	open := 0
	for c := range s.conns {
		if c.state.Load() == stateIdle {
			_ = c.nc.Close()
			continue
		}
		open++
	}
	return open
}

// ClientGone reports whether the request's client has closed its connection (or reset
// it), without reading anything it sent: for a request that waited for a worker, so that a
// client that left is not served. False whenever it cannot tell. A ResponseWriter of this
// package has it as a method; herd's proxy looks for that method.
func (w *response) ClientGone() bool {
	return w.c.raw != nil && w.c.r == w.c.w && w.c.raw.PeerClosed()
}
