// Package server is the master: it opens the listeners, assembles the front ends (herd's
// HTTP/1 server, net/http's HTTP/2, the uwsgi front end for nginx, static files), the
// worker supervisor and the admin server, runs the one signal loop, and stops it all in
// order. It is also where a deployment meets herd: systemd's notify socket and socket
// activation, Kubernetes' drain, USR2's binary upgrade and the TLS certificate store.
//
// It owns no request and no worker process itself: requests are the proxy's, processes the
// supervisor's. What it owns is the wiring between them, and the one door every reload goes
// through (Reload).
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/herd-server/herd/admin"
	"github.com/herd-server/herd/config"
	"github.com/herd-server/herd/proxy"
	"github.com/herd-server/herd/supervisor"
	"github.com/herd-server/herd/supervisor/autoreload"
	"github.com/herd-server/herd/supervisor/daemon"
	"github.com/herd-server/herd/supervisor/spawn"
)

// AppBootError says that no worker could load the app: nothing could ever be served. The
// herd command exits with status 3 for it, as gunicorn does.
type AppBootError struct{ Err error }

func (e *AppBootError) Error() string { return e.Err.Error() }
func (e *AppBootError) Unwrap() error { return e.Err }

// Server is one master process's run. Make it with New, run it once with Run.
type Server struct {
	cfg     *config.Config
	version string
	log     zerolog.Logger

	// cleanups run in reverse order when Run returns, whatever the path.
	cleanups []func()

	certs   *certStore // nil without --https
	dep     *deployment
	upgrade *upgrader
	// upgradeFrom is the pid of the master whose USR2 started this one, 0 otherwise.
	upgradeFrom int
	lns         listenerSet
	fds         fdBudget
	runDir      string
	worker      spawn.WorkerFiles

	pool    *supervisor.Pool
	sup     *supervisor.Supervisor
	metrics *admin.Metrics
	info    admin.Info
	fronts  frontEnds
	// reloads is the file watcher's loop (dev mode, --touch-reload); nil without one.
	reloads  *autoreload.Loop
	devState *autoreload.State
	ctl      *masterControl
	adminSrv *admin.Server
	// daemons are the --attach-daemon processes; nil without any.
	daemons *daemon.Set
	signals chan os.Signal
	// ws counts the WebSockets (nil for a WSGI app), and closes them at a stop.
	ws *proxy.WebSockets
	// devTerminal: development mode started from a terminal, where a SIGHUP that comes with
	// the terminal gone means the user closed it: herd dev stops instead of reloading.
	devTerminal bool
}

// New returns a master for cfg (already validated). version is shown by /stats and
// `herd status`.
func New(cfg *config.Config, version string) *Server {
	return &Server{cfg: cfg, version: version}
}

// Run serves until a signal (or `herd stop`) stops the master, or the app cannot boot
// (an *AppBootError). ctx ending stops the master at once, as INT does.
func (s *Server) Run(ctx context.Context) error {
	defer s.runCleanups()
	if err := s.prepare(); err != nil {
		return err
	}
	if err := s.open(); err != nil {
		return err
	}
	if err := s.assemble(); err != nil {
		return err
	}
	return s.serve(ctx)
}

func (s *Server) atExit(f func()) { s.cleanups = append(s.cleanups, f) }

func (s *Server) runCleanups() {
	for i := len(s.cleanups) - 1; i >= 0; i-- {
		s.cleanups[i]()
	}
}

// prepare sets up the process itself: umask, logging, the TLS certificate, the Go runtime,
// the pidfile, the interpreter and the deployment's hooks.
func (s *Server) prepare() error {
	cfg := s.cfg
	if err := applyUmask(cfg.Umask); err != nil {
		return err
	}
	log, err := NewLogger(cfg, os.Stderr)
	if err != nil {
		return err
	}
	s.log = log
	if len(cfg.HTTPS) > 0 {
		// Before anything else: a certificate that does not load stops the start.
		if s.certs, err = newCertStore(cfg.Cert, cfg.Key, log); err != nil {
			return err
		}
	}
	log.Debug().Int("procs", setMasterProcs(cfg.MasterProcs, os.Getenv("GOMAXPROCS") != "")).Msg("master schedulers")
	setMasterGC(os.Getenv("GOGC") != "")
	if err := writePidfile(cfg.Pidfile); err != nil {
		return err
	}
	s.atExit(func() { removePidfile(cfg.Pidfile) })
	python, err := spawn.ResolvePython(cfg.Python)
	if err != nil {
		return err
	}
	cfg.Python = python
	s.upgradeFrom = takeUpgradeParent() // before the workers' environment is taken
	s.devTerminal = cfg.Reload && terminalAlive()
	s.dep = newDeployment(cfg, log)
	s.atExit(s.dep.close)
	s.upgrade = newUpgrader(log, s.dep, cfg.Pidfile)
	return nil
}

// open opens every listener (a port in use fails before any Python starts), the private
// runtime directory and the worker's code in it.
func (s *Server) open() error {
	lns, err := openListeners(s.cfg, s.dep, s.certs != nil)
	if err != nil {
		return err
	}
	s.lns = lns
	// Closing twice is harmless: the front ends close them on a stop too.
	s.atExit(func() { closeAll(s.lns.all()) })
	if s.cfg.Pipeline {
		s.log.Warn().Msg("--pipeline was removed and is ignored: a request sent behind another on a busy worker waited for it, however long, while another worker was free")
	}
	if s.cfg.Reload {
		warnExposedDevServer(s.log, append(append([]net.Listener{}, s.lns.http...), s.lns.https...))
	}
	s.fds = newFDBudget(s.cfg, s.log)
	s.lns.limit(s.fds.conns)
	s.lns.admin = limitAdmin(s.lns.admin)

	runDir, err := makeRunDir(s.log)
	if err != nil {
		return err
	}
	s.runDir = runDir
	s.atExit(func() { os.RemoveAll(runDir) })
	s.worker, err = spawn.InstallWorker(runDir, s.log)
	return err
}

// assemble builds the parts: the pool and its supervisor, the metrics, the request handler
// and the front ends, the reload loop, the control socket.
func (s *Server) assemble() error {
	cfg, log := s.cfg, s.log
	cred, err := spawn.Credential(cfg.UID, cfg.GID)
	if err != nil {
		return err
	}
	accessLog, err := newAccessLogger(cfg, log)
	if err != nil {
		return err
	}
	s.pool = supervisor.NewPool(cfg.QueueSize, cfg.QueueTimeout)
	// Metrics are always counted (about 100 ns a request): herd top reads them over the
	// control socket; --admin adds Prometheus, /stats and the dashboard.
	s.metrics = admin.NewMetrics(s.pool)
	// The control socket is the operator's own (mode 0600): herd status shows whole URIs.
	s.info = admin.Info{Version: s.version, App: cfg.App, Listeners: addrs(s.lns.http), ShowQuery: true}
	s.sup = s.newSupervisor(newSpawner(cfg, s.worker.Script).WithCredential(cred))
	if specs := daemon.Specs(cfg.AttachDaemon, cfg.SmartAttachDaemon); len(specs) > 0 {
		exec := newSpawner(cfg, "")
		s.daemons = &daemon.Set{Specs: specs, Dir: cfg.Chdir, Env: exec.Env, Log: log, StopTimeout: cfg.GracefulTimeout}
		s.info.Daemons = s.daemons.Status
	}
	if s.lns.admin != nil {
		adminInfo := s.info
		adminInfo.ShowQuery = cfg.AdminShowQuery
		s.adminSrv = admin.NewServer(s.metrics, adminInfo, cfg.AdminHosts, log.With().Str("component", "admin").Logger())
	}

	onDone := chainOnDone(s.metrics.OnDone, accessLog)
	front, err := s.newFrontHandler(onDone)
	if err != nil {
		return err
	}
	s.fronts = newFrontEnds(cfg, front, onDone, s.certs, s.lns, log)

	s.signals = make(chan os.Signal, 4)
	signal.Notify(s.signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTTIN, syscall.SIGTTOU)
	s.atExit(func() { signal.Stop(s.signals) })

	s.ctl, err = startControl(cfg, s.runDir, s, s.signals, addrs(s.lns.http), log)
	if err != nil {
		return err
	}
	s.atExit(s.ctl.Close)
	return nil
}

// newSupervisor makes the supervisor of the workers: exec starts them, or a fork server
// forks them (--preload, and development mode).
func (s *Server) newSupervisor(exec *spawn.Exec) *supervisor.Supervisor {
	cfg := s.cfg
	observers := supervisor.Observers{s.metrics, s.dep}
	var spawner spawn.Spawner = exec
	switch {
	case cfg.Preload:
		// The app imported once per generation, in a fork server the workers are forked
		// from (docs/lifecycle.md).
		fs := &spawn.ForkServer{Exec: exec, Log: s.log, Hooks: cfg.GunicornHooks}
		s.atExit(fs.Close) // after the supervisor's Run returned (serve waits for it)
		spawner = fs
		s.info.ForkServers = fs.Status
		s.metrics.WatchForkServers(fs.Status)
	case cfg.Reload:
		// Development mode: each generation's fork server is forked from a template that
		// holds the third-party modules the app imported, so a save waits for the
		// project's own modules, not for Python and Django (docs/development.md).
		fs := &spawn.ForkServer{Exec: exec, Log: s.log, Develop: true}
		s.atExit(fs.Close)
		spawner = fs
		s.info.ForkServers = fs.Status
	}
	return supervisor.New(supervisor.Options{
		Workers:         cfg.Workers,
		Threads:         cfg.Threads,
		BootTimeout:     cfg.BootTimeout,
		GracefulTimeout: cfg.GracefulTimeout,
		RunDir:          s.runDir,
		Spawner:         spawner,
		Log:             s.log,
		Observer:        observers,

		ChainReload:       cfg.ChainReload,
		RequestTimeout:    cfg.Timeout,
		MaxRequests:       cfg.MaxRequests,
		MaxRequestsJitter: cfg.MaxRequestsJitter,
		MaxLifetime:       cfg.MaxLifetime,
		MaxRSS:            int64(cfg.ReloadOnRSS) << 20,
		// Development mode keeps running when the code does not import at start: the
		// error page shows why, and the next save tries again. Production fails fast.
		AwaitFix: cfg.Reload,
	}, s.pool)
}

// newFrontHandler is what the HTTP front ends serve: the proxy to the workers, behind the
// static files, the metrics' count and, in development, the error page. The reload loop is
// made here too, as the error page follows its state.
func (s *Server) newFrontHandler(onDone func(*proxy.Record)) (*frontHandler, error) {
	cfg := s.cfg
	handler := &proxy.Handler{
		Backend:        poolBackend{s.pool},
		Log:            s.log.With().Str("component", "proxy").Logger(),
		OnDone:         onDone,
		BodyBuffer:     int64(cfg.BodyBuffer),
		BodyMemory:     int64(cfg.BodyMemory),
		MaxBodySize:    int64(cfg.MaxBodySize),
		ResponseBuffer: int64(cfg.ResponseBuffer),
		ResponseSpool:  int64(cfg.ResponseSpool),
		TempDir:        s.runDir,
		TempFiles:      s.fds.files,
		TempSpace:      int64(cfg.TempSpace),
		Mount:          cfg.MountPrefix(),
		AddHeaders:     addHeaders(cfg),
		WebSockets:     s.webSockets(),
	}
	registerBudgets(s.metrics.Registry(), handler, s.fds.files)
	var err error
	if handler.TrustedProxies, err = proxy.ParseTrustList(cfg.ForwardedAllowIPs); err != nil {
		return nil, fmt.Errorf("forwarded-allow-ips: %w", err)
	}
	if s.reloads, s.devState, err = newReloadLoop(cfg, s.log, s); err != nil {
		return nil, err
	}
	app, closeStatic, err := withStatic(cfg, handler, onDone, s.metrics.Registry(), s.fds.files, s.log)
	if err != nil {
		return nil, err
	}
	s.atExit(func() { _ = closeStatic() })
	front := s.metrics.Track(app)
	if s.devState != nil {
		s.reloads.AwaitFirstBoot(s.sup.FirstBoot())
		front = errorPage(front, s.devState, s.worker.Code...)
	}
	return &frontHandler{http: withAddedHeaders(front, handler.AddHeaders), uwsgi: handler}, nil
}

// Reload is the one door to a graceful reload: SIGHUP, `herd reload`, a file change under
// `herd dev` and --touch-reload all come through it. It reads the TLS certificate anew (a
// failure is logged, and the old one keeps serving), then starts a new generation of
// workers. The channel gives the outcome once the new generation serves or failed to
// start (then the old one keeps serving); a certificate's failure is joined to it.
func (s *Server) Reload() <-chan error {
	certErr := s.certs.Reload()
	workers := s.sup.Reload()
	if certErr == nil {
		return workers
	}
	out := make(chan error, 1)
	// Ends when the supervisor answers, which it always does (at once when stopped).
	go func() { out <- errors.Join(certErr, <-workers) }()
	return out
}

// serve starts the supervisor, the front ends, the reload loop and the admin server, and
// runs the signal loop until the master is to exit.
func (s *Server) serve(ctx context.Context) error {
	supDone := make(chan error, 1)
	go func() { supDone <- s.sup.Run(context.Background()) }()
	stopReloading := func() {}
	if s.reloads != nil {
		stopReloading = background(s.reloads.Run)
	}
	stopDaemons := func() {}
	if s.daemons != nil {
		stopDaemons = background(s.daemons.Run)
	}
	var serving sync.WaitGroup
	s.fronts.serve(&serving, s.log)
	if s.adminSrv != nil {
		serving.Add(1)
		go func() {
			defer serving.Done()
			s.adminSrv.Serve(s.lns.admin)
		}()
		s.log.Info().Str("admin", s.lns.admin.Addr().String()).Msg("admin server listening")
	}
	s.logStart()
	go func() {
		select {
		case <-s.sup.Ready():
			s.log.Info().Msg("serving")
			s.dep.serving()
			retireOldMaster(s.log, s.upgradeFrom)
		case <-ctx.Done():
		}
	}()

	err := s.waitForStop(ctx, supDone)
	stopReloading()
	stopDaemons() // after the workers: a job queue's consumer outlives the requests feeding it
	if s.adminSrv != nil {
		s.adminSrv.Shutdown(time.Second)
		// A unix admin socket's file goes with the last master using it: not while a
		// master started by USR2 serves on it.
		if path, ok := strings.CutPrefix(s.cfg.Admin, "unix:"); ok && !s.upgrade.running.Load() {
			_ = os.Remove(path)
		}
	}
	serving.Wait()
	if err != nil {
		return &AppBootError{Err: err}
	}
	s.log.Info().Msg("herd stopped")
	return nil
}

// background runs run in a goroutine of its own until the function it returns is called,
// which stops it and waits for it to return.
func background(run func(context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

func (s *Server) logStart() {
	cfg := s.cfg
	s.log.Info().Str("app", cfg.App).Str("runtime_dir", s.runDir).Strs("http", addrs(s.lns.http)).Strs("https", addrs(s.lns.https)).Strs("uwsgi", addrs(s.lns.uwsgi)).Int("workers", cfg.Workers).Int("max_connections", s.fds.conns.Max()).Int("temp_files", s.fds.files.Max()).
		Int("threads", cfg.Threads).Str("python", cfg.Python).Int("pid", os.Getpid()).
		Str("control_socket", s.ctl.Path()).Msg("herd is starting")
}

// waitForStop handles signals until the master is to exit, and returns the supervisor's
// result. TERM drains: new connections are still served for --shutdown-delay, then the
// listeners close, requests in flight finish, and workers stop. INT and QUIT, or a second
// TERM, stop at once; so does ctx ending. As soon as any stop begins the admin server's
// /readyz turns 503 and systemd hears STOPPING=1.
func (s *Server) waitForStop(ctx context.Context, supDone <-chan error) error {
	draining := false
	shutdownDone := make(chan struct{})
	abortDrain := make(chan struct{})
	ctxDone := ctx.Done()
	for {
		var sig os.Signal
		select {
		case err := <-supDone:
			// The supervisor ended on its own: the app cannot boot.
			_ = s.fronts.Close()
			return err
		case <-shutdownDone:
			shutdownDone = nil
			s.sup.Stop(true)
			continue
		case <-ctxDone:
			ctxDone = nil
			sig = syscall.SIGINT
		case sig = <-s.signals:
		}
		switch {
		case sig == syscall.SIGUSR1:
			reopenLogs(s.log)
		case sig == syscall.SIGHUP && s.devTerminal && !terminalAlive():
			s.log.Info().Msg("SIGHUP: the terminal is gone, stopping")
			return s.fastStop(abortDrain, supDone)
		case sig == syscall.SIGHUP:
			// The supervisor logs how the reload ends; nobody waits for it here.
			s.log.Info().Msg("SIGHUP: graceful reload")
			s.Reload()
		case sig == syscall.SIGUSR2 && !draining:
			s.upgrade.start()
		case sig == syscall.SIGUSR2:
			s.log.Warn().Msg("USR2 while stopping: no upgrade")
		case sig == syscall.SIGTTIN:
			s.sup.Scale(+1)
		case sig == syscall.SIGTTOU:
			s.sup.Scale(-1)
		case sig == syscall.SIGTERM && !draining:
			draining = true
			s.beginStop()
			s.log.Info().Str("signal", sig.String()).Dur("graceful_timeout_ms", s.cfg.GracefulTimeout).Msg("graceful stop: finishing requests in flight")
			go func() {
				s.dep.gracefulShutdown(abortDrain, s.fronts, s.cfg.GracefulTimeout)
				s.closeWebSockets() // still open after --graceful-timeout
				close(shutdownDone)
			}()
		default:
			s.log.Info().Str("signal", sig.String()).Msg("fast stop")
			return s.fastStop(abortDrain, supDone)
		}
	}
}

// fastStop stops at once: listeners closed, workers told to exit.
func (s *Server) fastStop(abortDrain chan struct{}, supDone <-chan error) error {
	s.beginStop()
	close(abortDrain)
	s.closeWebSockets()
	_ = s.fronts.Close()
	s.sup.Stop(false)
	return <-supDone
}

// beginStop marks the stop everywhere it shows, before any listener closes.
func (s *Server) beginStop() {
	s.metrics.SetDraining()
	s.dep.beginDrain()
	// Decided before any listener closes: a new master started by USR2 serves on.
	s.dep.keepSocketFiles(s.upgrade.running.Load())
}

// terminalAlive says whether the process still has a controlling terminal: once the
// terminal is closed (its session hung up), /dev/tty can no longer be opened.
func terminalAlive() bool {
	f, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	_ = f.Close()
	return true
}

// warnExposedDevServer warns when development mode listens beyond loopback: its error page
// shows source code and tracebacks to whoever asks.
func warnExposedDevServer(log zerolog.Logger, lns []net.Listener) {
	for _, ln := range lns {
		tcp, ok := ln.Addr().(*net.TCPAddr)
		if ok && !tcp.IP.IsLoopback() {
			log.Warn().Str("listen", tcp.String()).
				Msg("development mode on a non-loopback address: its error page shows your source code to anyone who can reach it; serve on 127.0.0.1 unless this is what you want")
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
	args := []string{"--app", cfg.App, "--threads", fmt.Sprint(cfg.Threads),
		"--interface", cfg.Interface, "--worker-connections", fmt.Sprint(cfg.WorkerConnections)}
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

// poolBackend adapts the supervisor's pool to the proxy's Backend.
type poolBackend struct{ pool *supervisor.Pool }

func (b poolBackend) Acquire(ctx context.Context) (proxy.Lease, error) {
	l, err := b.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	return poolLease{l}, nil
}

// poolLease is the pool's lease as the proxy's: its stream, when it has one, as the proxy's
// Stream. One pointer: it goes into the interface without an allocation.
type poolLease struct{ *supervisor.Lease }

func (l poolLease) Stream() proxy.Stream {
	if s := l.Lease.Stream(); s != nil {
		return s
	}
	return nil
}
