package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/herd-server/herd/admin"
	"github.com/herd-server/herd/config"
	"github.com/herd-server/herd/proxy"
	"github.com/herd-server/herd/proxy/h1"
	"github.com/herd-server/herd/supervisor"
	"github.com/herd-server/herd/supervisor/spawn"
)

func newServeCmd() *cobra.Command {
	var files configFlags
	cmd := &cobra.Command{
		Use:   "serve [module:callable]",
		Short: "serve a WSGI app through supervised Python workers",
		Long: `Serve a WSGI app through supervised Python workers.

Every option can also be set with its HERD_* environment variable or in a config file
(herd.yaml, herd.toml or herd.json in the working directory, or --config FILE).
Precedence: flag > environment > config file > default.

uWSGI and gunicorn deployments move as they are: --ini app.ini reads a uWSGI [uwsgi]
section, and gunicorn's flags (-w, -b, --threads, --timeout, --access-logfile ...) mean
what they mean in gunicorn. Options herd does not take are named in one warning.

Signals: HUP graceful reload (a new generation of workers; a generation that cannot import
the app never replaces a working one; the --https certificate is read anew), TERM graceful stop (requests in flight finish), INT and
QUIT fast stop, TTIN / TTOU one worker more / less, USR1 reopen the --log-file and
--access-log files (after logrotate moved them), USR2 upgrade: start the herd binary anew
on the same listening sockets, then drain and exit once it serves.`,
		Example: `  herd serve hello:app --http 127.0.0.1:8000 --workers 4
  herd serve --ini uwsgi.ini
  herd serve -w 4 -b 0.0.0.0:8000 -b unix:/run/app.sock --chdir /srv/app myproject.wsgi`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := files.resolve(cmd, args)
			if err != nil {
				return err
			}
			if err := logWarnings(&l); err != nil {
				return err
			}
			return serve(cmd.Context(), &l.Config)
		},
	}
	files.register(cmd)
	return cmd
}

// serve runs the master until a signal stops it or the app cannot boot.
func serve(ctx context.Context, cfg *config.Config) error {
	if err := applyUmask(cfg.Umask); err != nil {
		return err
	}
	log, err := newLogger(cfg, os.Stderr)
	if err != nil {
		return err
	}
	var certs *certStore
	if len(cfg.HTTPS) > 0 {
		// Before anything else: a certificate that does not load stops the start.
		if certs, err = newCertStore(cfg.Cert, cfg.Key, log); err != nil {
			return err
		}
	}
	log.Debug().Int("procs", setMasterProcs(cfg.MasterProcs, os.Getenv("GOMAXPROCS") != "")).Msg("master schedulers")
	setMasterGC(os.Getenv("GOGC") != "")
	cred, err := spawn.Credential(cfg.UID, cfg.GID)
	if err != nil {
		return err
	}
	if err := writePidfile(cfg.Pidfile); err != nil {
		return err
	}
	defer removePidfile(cfg.Pidfile)
	accessLog, err := newAccessLogger(cfg, log)
	if err != nil {
		return err
	}

	python, err := spawn.ResolvePython(cfg.Python)
	if err != nil {
		return err
	}
	cfg.Python = python
	upgradeFrom := takeUpgradeParent() // before the workers' environment is taken
	dep := newDeployment(cfg, log)
	defer dep.close()
	upgrade := newUpgrader(log, dep, cfg.Pidfile)

	// Listeners first: a port in use should fail before any Python starts.
	listeners, uwsgiListeners, err := dep.listeners(cfg)
	if err != nil {
		return err
	}
	connLimit := newConnLimit(cfg, log)
	listeners, uwsgiListeners = limitAll(connLimit, listeners), limitAll(connLimit, uwsgiListeners)
	// From here on the uwsgi listeners close with the HTTP ones.
	listeners = append(listeners, uwsgiListeners...)
	httpListeners := listeners[:len(listeners)-len(uwsgiListeners)]
	httpsListeners, err := dep.httpsListeners(cfg)
	if err == nil && len(httpsListeners) > 0 && certs == nil {
		closeAll(httpsListeners)
		err = errNoCert // a socket passed as "https" without --https --cert --key
	}
	if err != nil {
		closeAll(listeners)
		return err
	}
	httpsListeners = limitAll(connLimit, httpsListeners)
	listeners = append(listeners, httpsListeners...)
	var adminLn net.Listener
	if cfg.Admin != "" {
		if adminLn, err = dep.adminListener(cfg); err != nil {
			closeAll(listeners)
			return err
		}
	}
	runDir, err := os.MkdirTemp("", "herd-")
	if err != nil {
		closeAll(append(listeners, adminLn))
		return fmt.Errorf("create runtime directory: %w", err)
	}
	defer os.RemoveAll(runDir)
	worker, err := spawn.InstallWorker(runDir, log)
	if err != nil {
		closeAll(append(listeners, adminLn))
		return err
	}

	onDone := accessLog
	pool := supervisor.NewPool(cfg.QueueSize, cfg.QueueTimeout)
	exits := &exitCounter{} // for herd status
	// Metrics are always counted (about 100 ns a request): herd top reads them over the
	// control socket; --admin adds Prometheus, /stats and the dashboard.
	metrics := admin.NewMetrics(pool)
	observers := supervisor.Observers{exits, metrics}
	onDone = chainOnDone(metrics.OnDone, onDone)
	statsInfo := admin.Info{Version: herdVersion(), Listeners: addrs(httpListeners)}
	var adminSrv *admin.Server
	if adminLn != nil {
		adminSrv = admin.NewServer(metrics, statsInfo, log.With().Str("component", "admin").Logger())
	}
	execSpawner := newSpawner(cfg, worker.Script).WithCredential(cred)
	var spawner spawn.Spawner = execSpawner
	if cfg.Reload {
		// Development mode: a reload hands the new worker to an interpreter started ahead,
		// so a save waits for the app's import, not for Python to start.
		standby := &spawn.Standby{Exec: execSpawner, Log: log}
		defer standby.Close() // after the supervisor's Run returned (waitForStop waits for it)
		spawner = standby
		observers = append(observers, standbyRefill{sb: standby})
	}
	sup := supervisor.New(supervisor.Options{
		Workers:         cfg.Workers,
		Threads:         cfg.Threads,
		BootTimeout:     cfg.BootTimeout,
		GracefulTimeout: cfg.GracefulTimeout,
		RunDir:          runDir,
		Spawner:         spawner,
		Log:             log,
		Observer:        append(observers, dep),

		ChainReload:       cfg.ChainReload,
		RequestTimeout:    cfg.Timeout,
		Pipeline:          cfg.Pipeline,
		MaxRequests:       cfg.MaxRequests,
		MaxRequestsJitter: cfg.MaxRequestsJitter,
		MaxLifetime:       cfg.MaxLifetime,
		MaxRSS:            int64(cfg.ReloadOnRSS) << 20,
		// Development mode keeps running when the code does not import at start: the
		// error page shows why, and the next save tries again. Production fails fast.
		AwaitFix: cfg.Reload,
	}, pool)

	handler := &proxy.Handler{
		Backend:        poolBackend{pool},
		Log:            log.With().Str("component", "proxy").Logger(),
		OnDone:         onDone,
		BodyBuffer:     int64(cfg.BodyBuffer),
		BodyMemory:     int64(cfg.BodyMemory),
		MaxBodySize:    int64(cfg.MaxBodySize),
		ResponseBuffer: int64(cfg.ResponseBuffer),
		ResponseSpool:  int64(cfg.ResponseSpool),
		TempDir:        runDir,
		Mount:          cfg.MountPrefix(),
	}
	if handler.TrustedProxies, err = proxy.ParseTrustList(cfg.ForwardedAllowIPs); err != nil {
		closeAll(append(listeners, adminLn))
		return fmt.Errorf("forwarded-allow-ips: %w", err)
	}
	limits := proxy.HeadLimits{RequestLine: cfg.LimitRequestLine, Fields: cfg.LimitRequestFields, FieldSize: cfg.LimitRequestFieldSize, H2C: cfg.H2C, HeadTimeout: cfg.HeaderTimeout}
	reloadLoop, devState, err := newReloadLoop(cfg, log, sup)
	if err != nil {
		closeAll(append(listeners, adminLn))
		return err
	}
	app, closeStatic, err := withStatic(cfg, handler, onDone, metrics.Registry(), log)
	if err != nil {
		closeAll(append(listeners, adminLn))
		return err
	}
	defer closeStatic()
	front := metrics.Track(app)
	if devState != nil {
		reloadLoop.AwaitFirstBoot(sup.FirstBoot())
		front = errorPage(front, devState, worker.Code...)
	}
	conns := &connTracker{}
	srv := &http.Server{
		Handler:           conns.handler(front),
		ConnState:         conns.connState,
		ReadHeaderTimeout: cfg.HeaderTimeout, // slowloris: see --header-timeout
		// Above the head checker's bound, so that the checker refuses first, with the
		// status gunicorn's limits give.
		MaxHeaderBytes: limits.MaxHead() + 4096,
		IdleTimeout:    cfg.KeepAlive,
		ErrorLog:       newStdLogger(log.With().Str("component", "http").Logger()),
		Protocols:      httpProtocols(cfg.H2C),
	}
	if certs != nil {
		srv.TLSConfig = certs.tlsConfig()
	}

	// HTTP/1.x goes through herd's own server (proxy/h1); net/http serves HTTP/2 (over TLS
	// once ALPN chose h2, and cleartext with --h2c, where net/http takes the --http
	// listeners with the head checker in front of it).
	h1srv := &h1.Server{
		Handler:       conns.handler(front),
		Limits:        h1.Limits{RequestLine: cfg.LimitRequestLine, Fields: cfg.LimitRequestFields, FieldSize: cfg.LimitRequestFieldSize},
		HeaderTimeout: cfg.HeaderTimeout,
		IdleTimeout:   cfg.KeepAlive,
		// As the uwsgi front end: a body that stops coming for a minute is given up.
		BodyIdleTimeout: uwsgiBodyIdleTimeout,
		Log:             log.With().Str("component", "http").Logger(),
		ConnState:       conns.connState,
		OnRefused:       refusedLogger(onDone),
	}
	h2conns := newConnQueue()
	if certs != nil {
		h1srv.TLSConfig = certs.tlsConfig()
		h1srv.NextProto = map[string]func(*tls.Conn){"h2": func(c *tls.Conn) { h2conns.push(c) }}
	}
	if cfg.KeepAlive == 0 {
		srv.SetKeepAlivesEnabled(false) // gunicorn's --keep-alive 0
		h1srv.SetKeepAlivesEnabled(false)
	}
	uwsgiSrv := &proxy.UwsgiServer{Handler: handler, HeadTimeout: uwsgiHeadTimeout, BodyIdleTimeout: uwsgiBodyIdleTimeout}
	fronts := frontEnds{http: srv, h1: h1srv, h2conns: h2conns, uwsgi: uwsgiSrv, conns: conns, httpListeners: httpListeners, httpsListeners: httpsListeners, certs: certs}

	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTTIN, syscall.SIGTTOU)
	defer signal.Stop(signals)

	ctl, err := startControl(cfg, runDir, sup, certs.Reload, exits, signals, addrs(httpListeners), log)
	if err != nil {
		closeAll(append(listeners, adminLn))
		return err
	}
	defer ctl.Close()
	ctl.Handle("stats", func(context.Context, json.RawMessage) (any, error) {
		return metrics.Stats(time.Now(), statsInfo), nil
	})

	supDone := make(chan error, 1)
	go func() { supDone <- sup.Run(context.Background()) }()
	reloadCtx, stopReloading := context.WithCancel(context.Background())
	reloading := make(chan struct{})
	go func() {
		defer close(reloading)
		if reloadLoop != nil {
			reloadLoop.Run(reloadCtx)
		}
	}()

	var serving sync.WaitGroup
	for _, ln := range uwsgiListeners {
		serving.Add(1)
		go func() {
			defer serving.Done()
			if err := uwsgiSrv.Serve(ln); err != nil && !errors.Is(err, proxy.ErrServerClosed) {
				log.Error().Err(err).Str("listen", ln.Addr().String()).Msg("uwsgi listener failed")
			}
		}()
	}
	for _, ln := range httpListeners {
		serving.Add(1)
		go func() {
			defer serving.Done()
			var err error
			if cfg.H2C {
				err = srv.Serve(proxy.CheckHeads(ln, limits))
			} else {
				err = h1srv.Serve(ln)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, h1.ErrServerClosed) && !(fronts.conns.closing.Load() && errors.Is(err, net.ErrClosed)) {
				log.Error().Err(err).Str("listen", ln.Addr().String()).Msg("http listener failed")
			}
		}()
	}
	for _, ln := range httpsListeners {
		serving.Add(1)
		go func() {
			defer serving.Done()
			// HTTP/1.1 over TLS is herd's own server, with its request checks; a connection
			// that negotiated h2 goes to net/http through h2conns.
			err := h1srv.ServeTLS(ln)
			if err != nil && !errors.Is(err, h1.ErrServerClosed) && !(fronts.conns.closing.Load() && errors.Is(err, net.ErrClosed)) {
				log.Error().Err(err).Str("listen", ln.Addr().String()).Msg("https listener failed")
			}
		}()
	}
	if certs != nil {
		serving.Add(1)
		go func() {
			defer serving.Done()
			_ = srv.Serve(h2conns) // ends when the queue closes (Shutdown or Close)
		}()
	}
	if adminSrv != nil {
		serving.Add(1)
		go func() {
			defer serving.Done()
			adminSrv.Serve(adminLn)
		}()
		log.Info().Str("admin", adminLn.Addr().String()).Msg("admin server listening")
	}
	log.Info().Str("app", cfg.App).Str("runtime_dir", runDir).Strs("http", addrs(httpListeners)).Strs("https", addrs(httpsListeners)).Strs("uwsgi", addrs(uwsgiListeners)).Int("workers", cfg.Workers).Int("max_connections", connLimit.Max()).
		Int("threads", cfg.Threads).Str("python", cfg.Python).Int("pid", os.Getpid()).
		Str("control_socket", ctl.Path()).Msg("herd is starting")
	go func() {
		select {
		case <-sup.Ready():
			log.Info().Msg("serving")
			dep.serving()
			retireOldMaster(log, upgradeFrom)
		case <-ctx.Done():
		}
	}()

	onDrain := func() {
		metrics.SetDraining()
		dep.beginDrain()
		// Decided before any listener closes: a new master started by USR2 serves on.
		dep.keepSocketFiles(upgrade.running.Load())
	}
	err = waitForStop(log, signals, supDone, fronts, sup, dep, upgrade, cfg.GracefulTimeout, onDrain)
	stopReloading()
	<-reloading
	if adminSrv != nil {
		adminSrv.Shutdown(time.Second)
		// A unix admin socket's file goes with the last master using it: not while a
		// master started by USR2 serves on it.
		if path, ok := strings.CutPrefix(cfg.Admin, "unix:"); ok && !upgrade.running.Load() {
			_ = os.Remove(path)
		}
	}
	serving.Wait()
	var boot *supervisor.BootError
	if errors.As(err, &boot) {
		fmt.Fprintf(os.Stderr, "\nherd: the app %q could not be loaded:\n\n%s\n", cfg.App, strings.TrimRight(boot.Traceback, "\n"))
		return &exitCodeError{code: exitAppBoot, err: err}
	}
	if err != nil {
		return &exitCodeError{code: exitAppBoot, err: err}
	}
	log.Info().Msg("herd stopped")
	return nil
}

// waitForStop handles signals until the master is to exit, and returns the supervisor's
// result. TERM drains: new connections are still served for --shutdown-delay, then the
// listeners close, requests in flight finish, and workers stop. INT and QUIT, or a second
// TERM, stop at once. onDrain is called as soon as any stop begins (the admin server's
// /readyz turns 503 then, and systemd hears STOPPING=1).
func waitForStop(log zerolog.Logger, signals <-chan os.Signal, supDone <-chan error, srv frontEnd, sup *supervisor.Supervisor, dep *deployment, upgrade *upgrader, graceful time.Duration, onDrain func()) error {
	draining := false
	shutdownDone := make(chan struct{})
	abortDrain := make(chan struct{})
	for {
		select {
		case err := <-supDone:
			// The supervisor ended on its own: the app cannot boot.
			_ = srv.Close()
			return err
		case <-shutdownDone:
			shutdownDone = nil
			sup.Stop(true)
		case sig := <-signals:
			switch {
			case sig == syscall.SIGUSR1:
				reopenLogs(log)
			case sig == syscall.SIGHUP:
				// The supervisor logs how the reload ends; nobody waits for it here.
				log.Info().Msg("SIGHUP: graceful reload")
				_ = srv.ReloadCerts() // a failure is logged, and the old certificate serves on
				sup.Reload()
			case sig == syscall.SIGUSR2 && !draining:
				upgrade.start()
			case sig == syscall.SIGUSR2:
				log.Warn().Msg("USR2 while stopping: no upgrade")
			case sig == syscall.SIGTTIN:
				sup.Scale(+1)
			case sig == syscall.SIGTTOU:
				sup.Scale(-1)
			case sig == syscall.SIGTERM && !draining:
				draining = true
				onDrain()
				log.Info().Str("signal", sig.String()).Dur("graceful_timeout", graceful).Msg("graceful stop: finishing requests in flight")
				go func() {
					dep.gracefulShutdown(abortDrain, srv, graceful)
					close(shutdownDone)
				}()
			default:
				onDrain()
				log.Info().Str("signal", sig.String()).Msg("fast stop")
				close(abortDrain)
				_ = srv.Close()
				sup.Stop(false)
				return <-supDone
			}
		}
	}
}

func listenAll(addrs []string) ([]net.Listener, error) {
	var out []net.Listener
	for _, a := range addrs {
		ln, err := listen(a)
		if err != nil {
			closeAll(out)
			return nil, fmt.Errorf("http: listen on %s: %w", a, err)
		}
		out = append(out, ln)
	}
	return out, nil
}

// listen opens HOST:PORT, or unix:PATH as gunicorn's -b unix:PATH does: a socket file left
// by a master that died is replaced; the file is removed when the listener closes.
func listen(addr string) (net.Listener, error) {
	return listenWith(net.ListenConfig{}, addr)
}

func listenWith(lc net.ListenConfig, addr string) (net.Listener, error) {
	path, ok := strings.CutPrefix(addr, "unix:")
	if !ok {
		return lc.Listen(context.Background(), "tcp", addr)
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if c, err := net.Dial("unix", path); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("%s is in use by another process", path)
		}
		_ = os.Remove(path)
	}
	return lc.Listen(context.Background(), "unix", path)
}

func closeAll(lns []net.Listener) {
	for _, ln := range lns {
		if ln != nil { // the admin listener is nil when --admin is off
			_ = ln.Close()
		}
	}
}

func addrs(lns []net.Listener) []string {
	var out []string
	for _, ln := range lns {
		out = append(out, ln.Addr().String())
	}
	return out
}

func newSpawner(cfg *config.Config, workerScript string) *spawn.Exec {
	args := []string{"--app", cfg.App, "--threads", fmt.Sprint(cfg.Threads)}
	if cfg.Chdir != "" {
		args = append(args, "--chdir", cfg.Chdir)
	}
	for _, p := range cfg.PythonPath {
		args = append(args, "--pythonpath", p)
	}
	env := os.Environ()
	if _, ok := os.LookupEnv("PYTHONUNBUFFERED"); !ok {
		// The app's prints reach the log as they happen, not when a buffer fills.
		env = append(env, "PYTHONUNBUFFERED=1")
	}
	if _, ok := os.LookupEnv("PYTHONDONTWRITEBYTECODE"); !ok && cfg.Reload {
		// Bytecode caches are checked by the source's mtime in whole seconds and its size:
		// a second save within the same second, of the same size, would load the stale
		// cache. Without caches written, every reload compiles what changed.
		env = append(env, "PYTHONDONTWRITEBYTECODE=1")
	}
	env = append(env, cfg.Env...) // later entries win: -e overrides the master's environment
	return &spawn.Exec{
		Python:       cfg.Python,
		WorkerScript: workerScript,
		Args:         args,
		Env:          env,
		Dir:          cfg.Chdir,
	}
}

// chainOnDone calls each non-nil hook in order; nil when there is none.
func chainOnDone(hooks ...func(*proxy.Record)) func(*proxy.Record) {
	var live []func(*proxy.Record)
	for _, h := range hooks {
		if h != nil {
			live = append(live, h)
		}
	}
	switch len(live) {
	case 0:
		return nil
	case 1:
		return live[0]
	}
	return func(rec *proxy.Record) {
		for _, h := range live {
			h(rec)
		}
	}
}

// How long a uwsgi client may take to send its request head (nginx sends the head at once
// with the connection), and how long any client, HTTP or uwsgi, may pause in its body.
const (
	uwsgiHeadTimeout     = 10 * time.Second
	uwsgiBodyIdleTimeout = 60 * time.Second
)

// frontEnd is what a stop does to the servers that take requests.
type frontEnd interface {
	// BeginClosing makes every later response close its connection.
	BeginClosing()
	// StopAccepting closes the HTTP listeners and lingers (at most max) until the
	// keep-alive clients have taken a last answer and gone.
	StopAccepting(max time.Duration, abort <-chan struct{})
	Shutdown(context.Context) error
	Close() error
	// ReloadCerts reads the TLS certificate files again (a failure keeps the old pair).
	ReloadCerts() error
}

// frontEnds are the HTTP (and HTTPS) and the uwsgi servers, stopped together.
type frontEnds struct {
	http           *http.Server // HTTP/2, and everything on --http with --h2c
	h1             *h1.Server
	h2conns        *connQueue // TLS connections that negotiated h2, for http
	uwsgi          *proxy.UwsgiServer
	conns          *connTracker
	httpListeners  []net.Listener
	httpsListeners []net.Listener
	certs          *certStore // nil without --https
}

func (f frontEnds) BeginClosing() { f.conns.closing.Store(true) }

func (f frontEnds) StopAccepting(max time.Duration, abort <-chan struct{}) {
	f.conns.closing.Store(true)
	for _, ln := range f.httpListeners {
		_ = ln.Close()
	}
	for _, ln := range f.httpsListeners {
		_ = ln.Close()
	}
	f.conns.linger(max, abort)
}

func (f frontEnds) Close() error {
	_ = f.h2conns.Close()
	return errors.Join(f.http.Close(), f.h1.Close(), f.uwsgi.Close())
}

func (f frontEnds) ReloadCerts() error { return f.certs.Reload() }

// httpProtocols are what the HTTP server speaks: HTTP/1.1, HTTP/2 over TLS (ALPN), and
// cleartext HTTP/2 with prior knowledge only when --h2c asks for it.
func httpProtocols(h2c bool) *http.Protocols {
	p := &http.Protocols{}
	p.SetHTTP1(true)
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(h2c)
	return p
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

// poolBackend adapts the supervisor's pool to the proxy's Backend.
type poolBackend struct{ pool *supervisor.Pool }

func (b poolBackend) Acquire(ctx context.Context) (proxy.Lease, error) {
	l, err := b.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	return l, nil
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

// standbyRefill tells the development mode's standby spawner when to start the next
// interpreter: after a boot (the CPU is free again), and after a worker failed to boot or
// crashed (a reload or restart will want one). Not after a stop or a replacement on purpose.
type standbyRefill struct {
	supervisor.NopObserver
	sb *spawn.Standby
}

func (r standbyRefill) WorkerReady(supervisor.WorkerInfo, time.Duration) { r.sb.Refill() }

func (r standbyRefill) WorkerExited(_ supervisor.WorkerInfo, _ spawn.ExitStatus, cause supervisor.ExitCause) {
	switch cause {
	case supervisor.CauseBootError, supervisor.CauseBootTimeout, supervisor.CauseCrash:
		r.sb.Refill()
	}
}
