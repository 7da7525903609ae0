package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/herd-server/herd/admin"
	"github.com/herd-server/herd/config"
	"github.com/herd-server/herd/internal/listener"
	"github.com/herd-server/herd/internal/sdnotify"
	"github.com/herd-server/herd/supervisor"
	"github.com/herd-server/herd/supervisor/spawn"
)

// proxyHeaderTimeout bounds how long a connection on a --proxy-protocol listener may take
// to send its header: balancers send it at once, with the connection.
const proxyHeaderTimeout = 10 * time.Second

// activatedUwsgiName is the FileDescriptorName= of a passed socket meant for the uwsgi front
// end, activatedHTTPSName of one meant for TLS; every other passed socket serves HTTP.
const (
	activatedUwsgiName = "uwsgi"
	activatedHTTPSName = "https"
)

// deployment ties herd to what runs it: systemd's notify socket, the sockets it passed, and
// the drain that a Kubernetes SIGTERM starts. It is safe for concurrent use.
type deployment struct {
	log           zerolog.Logger
	notify        *sdnotify.Notifier // nil when not under systemd: every send is a no-op
	shutdownDelay time.Duration
	draining      atomic.Bool

	// sockets are the listening sockets by name (an --http address as written, or the name
	// systemd gave), before any PROXY wrapping: what a re-executed master inherits.
	sockets []listener.Activated
	// admin is an inherited admin server socket (named adminSocketName), else nil.
	admin net.Listener
	// activatedHTTPS are the passed sockets named activatedHTTPSName; activated says
	// whether any socket was passed at all (then --https is not used either).
	activatedHTTPS []net.Listener
	activated      bool

	mu         sync.Mutex
	successor  int          // pid of the master a USR2 upgrade started, while it runs
	ready      map[int]bool // worker ids the supervisor reported ready and not yet exited
	generation int          // the newest worker generation seen started
	reloading  bool         // between a new generation's first start and Reloaded
}

func newDeployment(cfg *config.Config, log zerolog.Logger) *deployment {
	d := &deployment{
		log:           log.With().Str("component", "deploy").Logger(),
		shutdownDelay: cfg.ShutdownDelay,
		ready:         map[int]bool{},
	}
	n, err := sdnotify.FromEnv()
	if err != nil {
		// systemd would time the service out, which says more than refusing to start would.
		d.log.Error().Err(err).Msg("cannot talk to systemd's notify socket")
	}
	d.notify = n
	return d
}

// Draining reports whether a graceful stop began: /readyz answers 503 from then on.
func (d *deployment) Draining() bool { return d.draining.Load() }

// listeners opens the HTTP and the uwsgi listeners: the sockets systemd passed when there
// are any (then --http and --uwsgi-socket are not used, as with gunicorn; a socket named
// "uwsgi" serves the uwsgi front end), else one per --http and --uwsgi-socket address.
// The HTTP listeners named by --proxy-protocol require a PROXY header.
func (d *deployment) listeners(cfg *config.Config) (httpLns, uwsgiLns []net.Listener, err error) {
	activated, err := listener.FromEnv()
	if err != nil {
		return nil, nil, err
	}
	type named struct {
		name string
		ln   net.Listener
	}
	var lns []named
	if len(activated) > 0 {
		for _, a := range activated {
			if a.Name == adminSocketName {
				d.admin = a.Listener // the admin server's, handed over by USR2 or passed by systemd
				continue
			}
			if a.Name == activatedUwsgiName {
				uwsgiLns = append(uwsgiLns, a.Listener)
				continue
			}
			if a.Name == activatedHTTPSName {
				d.activatedHTTPS = append(d.activatedHTTPS, a.Listener)
				continue
			}
			lns = append(lns, named{a.Name, a.Listener})
		}
		d.activated = true
		d.log.Info().Int("sockets", len(activated)).Msg("socket activation: serving the sockets systemd passed; --http, --https and --uwsgi-socket are not used")
	} else {
		plain, err := listenAll(cfg.HTTP)
		if err != nil {
			return nil, nil, err
		}
		for i, ln := range plain {
			lns = append(lns, named{cfg.HTTP[i], ln})
		}
		if uwsgiLns, err = listenUwsgi(cfg); err != nil {
			closeAll(plain)
			return nil, nil, err
		}
	}
	used := map[string]bool{}
	for _, n := range lns {
		d.sockets = append(d.sockets, listener.Activated{Name: n.name, Listener: n.ln})
		ln := n.ln
		if wantsProxyProtocol(cfg.ProxyProtocol, n.name, used) {
			ln = d.proxyListener(ln)
		}
		httpLns = append(httpLns, ln)
	}
	for _, ln := range uwsgiLns {
		// Named so that a new master (USR2) serves them as uwsgi again.
		d.sockets = append(d.sockets, listener.Activated{Name: activatedUwsgiName, Listener: ln})
	}
	for _, want := range cfg.ProxyProtocol {
		if want != "*" && !used[want] {
			closeAll(append(httpLns, uwsgiLns...))
			return nil, nil, fmt.Errorf("proxy-protocol: %q names no listener (give an --http address as written, a passed socket's name, or *)", want)
		}
	}
	return httpLns, uwsgiLns, nil
}

// httpsListeners are the TLS listeners: the passed sockets named "https" under socket
// activation (and after a USR2 upgrade), else one per --https address. Call it after
// listeners. A USR2 upgrade hands them over under that name.
func (d *deployment) httpsListeners(cfg *config.Config) ([]net.Listener, error) {
	lns := d.activatedHTTPS
	if !d.activated {
		for _, a := range cfg.HTTPS {
			ln, err := listen(a)
			if err != nil {
				closeAll(lns)
				return nil, fmt.Errorf("https: listen on %s: %w", a, err)
			}
			lns = append(lns, ln)
		}
	}
	named := make([]listener.Activated, 0, len(lns))
	for _, ln := range lns {
		named = append(named, listener.Activated{Name: activatedHTTPSName, Listener: ln})
	}
	d.sockets = append(named, d.sockets...)
	return lns, nil
}

// uwsgiListenConfig turns TCP keepalive off on uwsgi sockets: nginx opens a connection per
// request and closes it after the answer, so probes would never fire, and turning them on
// costs four setsockopt calls per request.
var uwsgiListenConfig = net.ListenConfig{KeepAlive: -1}

// listenUwsgi opens the --uwsgi-socket addresses; a Unix socket file gets
// --uwsgi-socket-mode, so that nginx's user (in the socket's group) may connect.
func listenUwsgi(cfg *config.Config) ([]net.Listener, error) {
	mode, err := cfg.UwsgiSocketFileMode()
	if err != nil {
		return nil, err
	}
	var out []net.Listener
	for _, a := range cfg.UwsgiSocket {
		ln, err := listenWith(uwsgiListenConfig, a)
		if err == nil {
			if path, ok := strings.CutPrefix(a, "unix:"); ok {
				err = os.Chmod(path, mode)
				if err != nil {
					_ = ln.Close()
				}
			}
		}
		if err != nil {
			closeAll(out)
			return nil, fmt.Errorf("uwsgi: listen on %s: %w", a, err)
		}
		out = append(out, ln)
	}
	return out, nil
}

func wantsProxyProtocol(wanted []string, name string, used map[string]bool) bool {
	if slices.Contains(wanted, name) {
		used[name] = true
		return true
	}
	return slices.Contains(wanted, "*")
}

func (d *deployment) proxyListener(ln net.Listener) net.Listener {
	d.log.Info().Str("listen", ln.Addr().String()).Msg("PROXY protocol required on this listener")
	return &listener.ProxyListener{
		Listener:      ln,
		HeaderTimeout: proxyHeaderTimeout,
		OnError: func(remote net.Addr, err error) {
			d.log.Warn().Str("remote", remote.String()).Str("listen", ln.Addr().String()).Err(err).Msg("connection refused: no valid PROXY header")
		},
	}
}

// adminSocketName names the admin server's socket among the handed-over ones.
const adminSocketName = "herd-admin"

// adminListener is the admin server's socket: the inherited one (a USR2 upgrade, or systemd
// passing a socket named herd-admin), else a new one on --admin. It joins the sockets a
// later USR2 hands over, so the admin address stays bound across upgrades.
func (d *deployment) adminListener(cfg *config.Config) (net.Listener, error) {
	ln := d.admin
	if ln == nil {
		var err error
		if ln, err = admin.Listen(cfg.Admin, cfg.AdminAllowRemote); err != nil {
			return nil, err
		}
	}
	// First in the hand-over: LISTEN_FDNAMES is colon-separated and an --http address
	// ("127.0.0.1:8000") used as a name splits in two, shifting every name after it.
	d.sockets = append([]listener.Activated{{Name: adminSocketName, Listener: ln}}, d.sockets...)
	return ln, nil
}

// handOver gives the listening sockets to a new master (USR2's re-exec): the files to pass
// as its descriptors 3, 4 ... and the LISTEN_* variables that make its listeners take them,
// with their names, so --proxy-protocol still finds them. Close the files once it started.
func (d *deployment) handOver() ([]*os.File, []string, error) {
	files, env, err := listener.HandOver(d.sockets)
	if err == nil && d.notify != nil {
		// The new master speaks to systemd once it is the main process.
		env = append(env, sdnotify.EnvSocket+"="+d.notify.Addr())
	}
	return files, env, err
}

// keepSocketFiles says whether closing the Unix listeners leaves their socket files in place:
// while a new master started by USR2 holds the same sockets, this one must not remove the
// files that clients find them by.
func (d *deployment) keepSocketFiles(keep bool) {
	for _, s := range d.sockets {
		if u, ok := s.Listener.(*net.UnixListener); ok {
			u.SetUnlinkOnClose(!keep)
		}
	}
}

func closeActivated(as []listener.Activated) {
	for _, a := range as {
		_ = a.Listener.Close()
	}
}

// serving tells systemd the first generation is ready.
func (d *deployment) serving() {
	d.send(d.notify.Ready(d.status("serving")))
}

// beginDrain marks the stop: readiness fails and systemd hears STOPPING=1, unless a master
// started by USR2 takes over: then systemd hears that it is the main process now (only the
// current main process may say so under NotifyAccess=main), and the service stays up.
func (d *deployment) beginDrain() {
	d.draining.Store(true)
	d.mu.Lock()
	successor := d.successor
	d.mu.Unlock()
	if successor != 0 {
		d.send(d.notify.Send("MAINPID="+strconv.Itoa(successor), "READY=1",
			fmt.Sprintf("STATUS=upgraded: master %d serves", successor)))
		return
	}
	d.send(d.notify.Stopping("stopping"))
}

// upgrading records the master USR2 started (0 once it has exited).
func (d *deployment) upgrading(pid int) {
	d.mu.Lock()
	d.successor = pid
	d.mu.Unlock()
}

// drainer is what a graceful stop does to the servers that take requests.
type drainer interface {
	// BeginClosing makes every later response close its connection.
	BeginClosing()
	// StopAccepting closes the HTTP listeners and lingers (at most max) until the
	// keep-alive clients have taken a last answer and gone.
	StopAccepting(max time.Duration, abort <-chan struct{})
	Shutdown(context.Context) error
}

// gracefulShutdown is TERM's path: keep serving for --shutdown-delay while the balancers
// take this instance out (readiness already fails), then close the listeners first, so new
// connections are refused at once and a balancer retries them elsewhere, and wait for the
// requests in flight. abort (a fast stop) cuts the delay short.
func (d *deployment) gracefulShutdown(abort <-chan struct{}, srv drainer, graceful time.Duration) {
	// From now on every response closes its connection: clients holding keep-alive
	// connections come back through the balancer, which sends them elsewhere.
	srv.BeginClosing()
	if d.shutdownDelay > 0 {
		d.log.Info().Dur("shutdown_delay_ms", d.shutdownDelay).Msg("draining: still accepting connections until the delay ends")
		t := time.NewTimer(d.shutdownDelay)
		select {
		case <-t.C:
		case <-abort:
			t.Stop()
			return
		}
	}
	d.log.Info().Msg("closing the listeners; finishing requests in flight")
	srv.StopAccepting(min(keepAliveLinger, graceful), abort)
	ctx, cancel := context.WithTimeout(context.Background(), graceful)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		d.log.Warn().Err(err).Msg("http shutdown")
	}
}

func (d *deployment) status(what string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	// Ready workers of every generation: during a reload both serve, and with TTIN/TTOU
	// the wanted number moves, so a count "of N" would mislead.
	if len(d.ready) == 1 {
		return what + ": 1 worker ready"
	}
	return fmt.Sprintf("%s: %d workers ready", what, len(d.ready))
}

func (d *deployment) send(err error) {
	if err != nil {
		d.log.Warn().Err(err).Msg("systemd notification failed")
	}
}

func (d *deployment) close() { _ = d.notify.Close() }

// The deployment observes the supervisor to keep systemd's STATUS= line current.
var _ supervisor.Observer = (*deployment)(nil)

// WorkerStarted notices a reload by its first worker of a new generation, whatever asked for
// it (SIGHUP, herd reload, a file change): systemd hears RELOADING=1 then, and READY=1 from
// Reloaded when it ends, either way.
func (d *deployment) WorkerStarted(w supervisor.WorkerInfo) {
	d.mu.Lock()
	reload := d.generation != 0 && w.Generation > d.generation
	d.generation = max(d.generation, w.Generation)
	d.reloading = d.reloading || reload
	d.mu.Unlock()
	if reload {
		d.send(d.notify.Reloading(d.status(fmt.Sprintf("reloading to generation %d", w.Generation))))
	}
}

func (d *deployment) WorkerReady(w supervisor.WorkerInfo, _ time.Duration) {
	d.mu.Lock()
	d.ready[w.ID] = true
	d.mu.Unlock()
	d.updateStatus()
}

func (d *deployment) WorkerExited(w supervisor.WorkerInfo, _ spawn.ExitStatus, _ supervisor.ExitCause) {
	d.mu.Lock()
	wasReady := d.ready[w.ID]
	delete(d.ready, w.ID)
	d.mu.Unlock()
	if wasReady {
		d.updateStatus()
	}
}

func (d *deployment) Reloaded(gen int, err error) {
	d.mu.Lock()
	d.reloading = false
	d.mu.Unlock()
	if err != nil {
		d.send(d.notify.Ready(d.status(fmt.Sprintf("reload to generation %d failed, old generation serving", gen))))
		return
	}
	d.send(d.notify.Ready(d.status(fmt.Sprintf("serving generation %d", gen))))
}

func (d *deployment) updateStatus() {
	what := "serving"
	d.mu.Lock()
	if d.reloading {
		what = "reloading"
	}
	d.mu.Unlock()
	if d.Draining() {
		what = "stopping"
	}
	d.send(d.notify.Status(d.status(what)))
}
