package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/herd-server/herd/supervisor"
)

// Server is the admin HTTP server behind --admin.
type Server struct {
	metrics *Metrics
	pool    PoolView
	info    Info
	log     zerolog.Logger

	closing chan struct{} // closed by Shutdown: server-sent event streams end
	srv     *http.Server
	served  chan struct{} // closed when Serve returned
	// tick is how often the event stream sends a snapshot.
	tick time.Duration
	// hosts are the names besides localhost that a Host header may give.
	hosts []string
}

// checkHost refuses a request whose Host names a host the admin server does not know, with
// 421 Misdirected Request. A page on an attacker's site can make the operator's browser
// send requests to 127.0.0.1 under the attacker's own name (DNS rebinding), and read the
// answers as same-origin: the name gives it away. Names that cannot be rebound pass: IP
// addresses, localhost, and the ones configured (--admin-hosts).
func (s *Server) checkHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !knownHost(r.Host, s.hosts) {
			s.log.Warn().Str("host", r.Host).Str("remote", r.RemoteAddr).Str("path", r.URL.Path).
				Msg("admin request refused: unknown Host (add it to --admin-hosts if it is yours)")
			writeText(w, http.StatusMisdirectedRequest, "unknown host: the admin server answers to localhost, IP addresses and --admin-hosts\n")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// knownHost says whether a Host header names the admin server: an IP address, localhost
// (or a name under .localhost, which resolvers keep on loopback), or one of hosts.
func knownHost(hostport string, hosts []string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "" {
		return false
	}
	if net.ParseIP(host) != nil || host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	for _, h := range hosts {
		if strings.EqualFold(strings.TrimSuffix(h, "."), host) {
			return true
		}
	}
	return false
}

// NewServer returns a server that reports on m and its pool. hosts are the host names it
// answers to besides localhost and IP addresses (see checkHost).
func NewServer(m *Metrics, info Info, hosts []string, log zerolog.Logger) *Server {
	s := &Server{
		metrics: m, pool: m.pool, info: info, log: log, hosts: hosts,
		closing: make(chan struct{}), served: make(chan struct{}), tick: time.Second,
	}
	s.srv = &http.Server{
		Handler:           s.checkHost(s.Handler()),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          stdlog.New(promLogger{log}, "", 0),
	}
	return s
}

// Handler routes the admin endpoints.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{ErrorLog: promLogger{s.log}}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, s.metrics.Stats(time.Now(), s.info))
	})
	mux.HandleFunc("GET /events", s.events)
	static, _ := fs.Sub(dashboardFS, "dashboard")
	mux.Handle("GET /", http.FileServerFS(static))
	return mux
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	switch {
	case s.metrics.Draining():
		writeText(w, http.StatusServiceUnavailable, "draining: herd is stopping\n")
	case !anyAccepting(s.pool):
		writeText(w, http.StatusServiceUnavailable, "no worker is ready\n")
	default:
		writeText(w, http.StatusOK, "ready\n")
	}
}

func anyAccepting(p PoolView) bool {
	for _, w := range p.Workers() {
		if accepting(w.State) {
			return true
		}
	}
	return false
}

// accepting: the worker takes requests (ready, whether or not a slot is free).
func accepting(s supervisor.State) bool { return s == supervisor.Ready }

// Serve serves on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) {
	defer close(s.served)
	if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.log.Error().Err(err).Msg("admin server failed")
	}
}

// Shutdown ends the event streams, then the server, waiting at most timeout for requests
// in flight. It returns once Serve has.
func (s *Server) Shutdown(timeout time.Duration) {
	close(s.closing)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close()
	}
	<-s.served
}

// Listen opens the admin listener: "unix:PATH" for a Unix socket (mode 0600; closing the
// listener leaves the file, which the caller removes when no master uses it), else
// HOST:PORT, which must be a loopback address unless allowRemote: the admin endpoints show
// what the app is doing and are meant for the operator, not for the world.
func Listen(addr string, allowRemote bool) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		return listenUnix(path)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("admin: %q is not HOST:PORT or unix:PATH: %w", addr, err)
	}
	if !allowRemote && !isLoopback(host) {
		return nil, fmt.Errorf("admin: %q is not a loopback address; bind 127.0.0.1, [::1] or unix:PATH, or pass --admin-allow-remote to expose it", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin: listen on %s: %w", addr, err)
	}
	return ln, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func listenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("admin: unix:%s is in use by a running server", path)
		}
		_ = os.Remove(path) // a stale socket of an earlier run
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin: listen on unix:%s: %w", path, err)
	}
	// The path is removed by the caller when the last master using it exits: closing this
	// listener must not remove it under a master a USR2 upgrade handed the socket to.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("admin: %w", err)
	}
	return ln, nil
}

func writeText(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// promLogger sends promhttp's and net/http's error lines to zerolog.
type promLogger struct{ log zerolog.Logger }

func (l promLogger) Println(v ...any) { l.log.Error().Msg(fmt.Sprint(v...)) }

func (l promLogger) Write(p []byte) (int, error) {
	l.log.Warn().Msg(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
