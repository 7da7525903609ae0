// Package supervisor owns the worker processes: it spawns them, learns when they are ready,
// restarts them when they die (with backoff), and stops them in order. It also owns the pool
// that hands their connections to requests.
//
// It knows nothing of HTTP. One loop (Run) owns every lifecycle decision; the goroutines it
// starts per worker only report (ready, boot error, exit) and never decide.
package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/herd-server/herd/internal/backoff"
	"github.com/herd-server/herd/supervisor/spawn"
	"github.com/rs/zerolog"
)

// Options configure a Supervisor.
type Options struct {
	Workers         int           // how many workers to keep
	Threads         int           // slots per worker
	BootTimeout     time.Duration // a worker not ready by then is killed
	GracefulTimeout time.Duration // how long a stopping worker may take before SIGKILL
	RunDir          string        // private 0700 directory for the worker sockets
	Spawner         spawn.Spawner
	Log             zerolog.Logger
	Observer        Observer // nil: NopObserver

	// ChainReload replaces one worker at a time on reload: at most one process more than
	// Workers, for hosts that cannot hold two generations in memory.
	ChainReload bool
	// RequestTimeout (--timeout): a request still running after it gets 504 and its worker
	// dumps its stacks and is killed. 0: no limit.
	RequestTimeout time.Duration
	// MaxRequests recycles a worker after that many requests, plus a random 0..Jitter.
	MaxRequests       int
	MaxRequestsJitter int
	// MaxLifetime recycles a worker after it lived that long, plus up to 10%.
	MaxLifetime time.Duration
	// MaxRSS recycles a worker whose resident memory exceeds it, in bytes; 0: never.
	MaxRSS int64
	// AwaitFix (development mode): when the first generation cannot load the app, Run does
	// not end with the error (production's fail-fast, exit 3): it keeps no worker running
	// and waits for a Reload to try the code again. FirstBoot tells the outcome either way.
	AwaitFix bool
}

// Restart backoff: the first unexpected death is replaced at once; each further death in a
// row doubles the wait, up to the cap. A worker that served for stableAfter resets the row.
const (
	backoffStep  = 100 * time.Millisecond
	backoffCap   = 10 * time.Second
	stableAfter  = 5 * time.Second
	crashLoopRow = 5
)

// Supervisor keeps the wanted number of workers alive.
type Supervisor struct {
	opts Options
	pool *Pool
	log  zerolog.Logger

	events chan event
	kick   chan struct{} // "look again": a drained worker went idle, a request below came in
	stopCh chan bool     // Stop's request; true = graceful
	done   chan struct{} // closed when Run returns: reporters stop sending
	ready  chan struct{} // closed when the first worker is ready
	// firstBoot gets the first generation's outcome, once (buffered).
	firstBoot chan error
	wg        sync.WaitGroup

	// Requests from other goroutines, taken by the Run loop.
	reqMu      sync.Mutex
	reloadReqs []chan error // Reload callers not yet seen by the loop
	scaleReq   int          // sum of Scale deltas not yet applied
	overran    []*Worker    // workers whose request overran RequestTimeout
	finished   bool         // Run has returned: Reload answers at once

	// Owned by the Run loop.
	workers      map[int]*Worker
	nextID       int
	generation   int // the generation new workers get
	failures     int
	nextSpawn    time.Time
	everReady    bool
	bootTold     bool // the first generation's outcome went to firstBoot
	awaitingFix  bool // AwaitFix: the app could not start, no worker until a reload
	stopping     bool
	fatal        error
	lastTrace    string
	reload       *reloadRun   // the reload in progress, nil when none
	queued       []chan error // reloads asked for meanwhile: they run next, together
	nextRSSCheck time.Time
}

type eventKind int

const (
	evReady eventKind = iota
	evBootError
	evExited
)

type event struct {
	kind   eventKind
	worker *Worker
	pid    int
	status spawn.ExitStatus
	boot   *BootError
	// framedSlots: the ready worker speaks the framed link with that many slots; 0 for a
	// uwsgi worker.
	framedSlots int
}

// New returns a supervisor; Run starts it.
func New(opts Options, pool *Pool) *Supervisor {
	if opts.Threads < 1 {
		opts.Threads = 1
	}
	if opts.Observer == nil {
		opts.Observer = NopObserver{}
	}
	s := &Supervisor{
		opts:      opts,
		pool:      pool,
		log:       opts.Log.With().Str("component", "supervisor").Logger(),
		events:    make(chan event),
		kick:      make(chan struct{}, 1),
		stopCh:    make(chan bool, 1),
		done:      make(chan struct{}),
		ready:     make(chan struct{}),
		firstBoot: make(chan error, 1),
		workers:   make(map[int]*Worker),
	}
	pool.mu.Lock()
	pool.notify = s.nudge
	pool.onOverrun = s.noteOverrun
	pool.requestTimeout = opts.RequestTimeout
	pool.mu.Unlock()
	return s
}

// Pool is the pool the supervisor fills.
func (s *Supervisor) Pool() *Pool { return s.pool }

// Ready is closed once the first worker can take requests.
func (s *Supervisor) Ready() <-chan struct{} { return s.ready }

// FirstBoot gives the first generation's outcome, once: nil when a worker is ready, else why
// none could start (a *BootError when the app does not import). Without AwaitFix the
// failure also ends Run, which returns it.
func (s *Supervisor) FirstBoot() <-chan error { return s.firstBoot }

// Stop asks Run to stop every worker and return. Graceful lets requests in flight finish
// (up to GracefulTimeout); otherwise workers are told to exit at once.
func (s *Supervisor) Stop(graceful bool) {
	select {
	case s.stopCh <- graceful:
	default: // a stop is already pending
	}
}

func (s *Supervisor) nudge() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Run keeps the workers alive until Stop or ctx (a fast stop), and returns once every worker
// has been reaped. It returns a *BootError or another error when the app cannot boot at all
// (no worker was ever ready), nil after a requested stop.
func (s *Supervisor) Run(ctx context.Context) error {
	defer func() {
		close(s.done)
		s.wg.Wait()
		s.finish()
	}()
	s.generation = 1
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	ctxDone := ctx.Done()
	for {
		s.step(time.Now())
		if (s.stopping || s.fatal != nil) && len(s.workers) == 0 {
			return s.fatal
		}
		timer.Reset(s.nextWake(time.Now())) // no stale tick can follow: Go 1.23 timers
		select {
		case <-ctxDone:
			ctxDone = nil
			s.beginStop(false)
		case graceful := <-s.stopCh:
			s.beginStop(graceful)
		case ev := <-s.events:
			s.handle(ev)
		case <-s.kick: // the next step looks at what changed
		case <-timer.C:
			s.enforceDeadlines(time.Now())
		}
	}
}

func (s *Supervisor) handle(ev event) {
	w := ev.worker
	switch ev.kind {
	case evReady:
		if w.State() != Starting {
			return // told to stop before it was ready
		}
		s.learnPid(w, ev.pid)
		w.readyAt = time.Now()
		if ev.framedSlots > 0 {
			s.pool.setFramed(w.member, ev.framedSlots)
		}
		if err := s.transition(w, Ready); err != nil {
			s.log.Error().Err(err).Msg("mark worker ready")
			return
		}
		s.log.Info().Int("worker", w.ID).Int("pid", w.Pid).Int("generation", w.Generation).
			Dur("boot_ms", w.readyAt.Sub(w.startedAt)).Msg("worker ready")
		s.opts.Observer.WorkerReady(s.pool.info(w.member), w.readyAt.Sub(w.startedAt))
		if !s.everReady {
			s.everReady = true
			s.awaitingFix = false // a sibling of a worker that failed made it after all
			s.tellFirstBoot(nil)
			close(s.ready)
		}
	case evBootError:
		w.bootError = ev.boot
		s.logBootError(w, ev.boot)
		switch {
		case s.inReload(w) && w.cause == "":
			w.cause = CauseBootError
			s.abortReload(ev.boot)
		case !s.everReady:
			if s.opts.AwaitFix {
				w.cause = CauseBootError // its exit is expected now: herd waits for a fix
			}
			s.firstBootFailed(ev.boot)
		}
	case evExited:
		s.reap(w, ev.status)
	}
}

// logBootError logs a worker's boot error; a traceback seen last time is not repeated, so a
// generation of workers failing alike logs it once.
func (s *Supervisor) logBootError(w *Worker, boot *BootError) {
	log := s.log.Error().Int("worker", w.ID).Int("generation", w.Generation).Str("error", boot.Message)
	switch {
	case boot.Traceback == "": // the worker itself could not start (kind "worker")
		log.Str("kind", boot.Kind).Msg("the worker could not start")
	case boot.Traceback != s.lastTrace:
		s.lastTrace = boot.Traceback
		log.Msg("the app could not be imported:\n" + boot.Traceback)
	default:
		log.Msg("the app could not be imported (same traceback as before)")
	}
}

// reap forgets a dead worker and decides what its death means.
func (s *Supervisor) reap(w *Worker, st spawn.ExitStatus) {
	s.learnPid(w, w.proc.Pid())
	now := time.Now()
	state := w.State()
	if s.inReload(w) && w.readyAt.IsZero() && w.cause == "" && !s.stopping {
		// A worker of the new generation died before it was ready: the reload failed.
		w.cause = bootFailureCause(w)
		defer s.abortReload(fmt.Errorf("worker %d of generation %d exited before it was ready (%s)", w.ID, w.Generation, st))
	}
	expected := w.cause != "" || state == Stopping || state == Draining || s.stopping
	cause := CauseCrash
	switch {
	case w.cause != "":
		cause = w.cause
	case expected:
		cause = CauseStop
	default:
		cause = bootFailureCause(w)
	}
	info := s.pool.info(w.member)
	if state != Dead {
		_ = s.transition(w, Dead)
	}
	s.opts.Observer.WorkerExited(info, st, cause)
	_ = w.control.Close()
	_ = os.Remove(w.SocketPath)
	delete(s.workers, w.ID)
	log := s.log.With().Int("worker", w.ID).Int("pid", w.Pid).Int("generation", w.Generation).Str("exit", st.String()).Logger()
	if expected {
		log.Info().Str("cause", string(cause)).Msg("worker stopped")
		return
	}
	if !s.everReady {
		log.Error().Msg("worker died before it was ready")
		if w.bootError != nil {
			s.firstBootFailed(w.bootError)
		} else {
			s.firstBootFailed(fmt.Errorf("worker %d exited before it was ready (%s); its output is in the log above", w.ID, st))
		}
		return
	}
	var readyFor time.Duration
	if !w.readyAt.IsZero() {
		readyFor = now.Sub(w.readyAt)
	}
	s.failures = deathsInARow(s.failures, readyFor, s.pool.servedAny(w.member))
	delay := restartDelay(s.failures)
	s.nextSpawn = now.Add(delay)
	ev := log.Warn()
	if s.failures >= crashLoopRow {
		ev = log.Error().Bool("crash_loop", true)
	}
	ev.Int("deaths_in_a_row", s.failures).Dur("restart_in_ms", delay).Msg("worker died")
}

// firstBootFailed handles the first generation failing before any worker was ready: in
// production herd stops (a supervisor such as systemd sees the exit and the log); with
// AwaitFix it waits, with no worker, for a reload with new code.
func (s *Supervisor) firstBootFailed(err error) {
	if s.fatal != nil || s.awaitingFix {
		return // told already
	}
	s.tellFirstBoot(err)
	if !s.opts.AwaitFix {
		s.fatal = err
		s.beginStop(false)
		return
	}
	s.awaitingFix = true
	s.log.Info().Msg("the app could not start: no worker runs until a reload brings new code")
}

func (s *Supervisor) tellFirstBoot(err error) {
	if !s.bootTold {
		s.bootTold = true
		s.firstBoot <- err
	}
}

// bootFailureCause names the death of a worker that nobody asked to go.
func bootFailureCause(w *Worker) ExitCause {
	switch {
	case w.bootError != nil:
		return CauseBootError
	case w.killed && w.readyAt.IsZero():
		return CauseBootTimeout
	}
	return CauseCrash
}

// deathsInARow counts an unexpected death into the row that backs off restarts, and returns
// the new length of the row. A worker that was ready for stableAfter, or that gave a
// response in full, was healthy: its death (killed from outside, by the OOM killer, or by an
// app that ends its process on one request) starts a new row and is replaced at once, as
// gunicorn and uWSGI do. Only workers that die before serving anything, at boot or on their
// first request every time, make the row grow: that is a crash loop.
func deathsInARow(row int, readyFor time.Duration, served bool) int {
	if served || readyFor >= stableAfter {
		return 1
	}
	return row + 1
}

// restartDelay is the wait before a worker is started again after deathsInARow deaths.
func restartDelay(deathsInARow int) time.Duration {
	return backoff.Policy{Step: backoffStep, Cap: backoffCap}.Delay(deathsInARow)
}

// step brings the workers toward what is wanted: it takes requests (reload, scale,
// timeouts), marks workers due for recycling, starts the missing ones, retires the replaced
// ones and ends a reload that is complete. Every decision is taken again from the current
// state each time, so an event lost between two steps cannot leave a stale plan behind.
func (s *Supervisor) step(now time.Time) {
	s.takeRequests(now)
	s.recycle(now)
	s.reconcile(now)
	s.rotate()
	s.stopIdleDrained()
	s.checkReload(now)
}

// reconcile starts workers until the wanted number of them is current (not on its way out),
// and retires the surplus after a scale-down.
func (s *Supervisor) reconcile(now time.Time) {
	if s.stopping || s.fatal != nil || s.awaitingFix {
		return
	}
	c := s.census()
	if c.current > s.opts.Workers {
		s.retireSurplus(c.current - s.opts.Workers)
		return
	}
	if now.Before(s.nextSpawn) {
		return
	}
	live := c.current
	limit := s.opts.Workers
	if s.chainReloading() {
		// One new worker at a time, and only once the one it replaced has exited.
		if c.starting > 0 || c.alive > s.opts.Workers {
			return
		}
		limit = min(limit, live+1)
	}
	for ; live < limit; live++ {
		if err := s.spawn(now); err != nil {
			s.log.Error().Err(err).Msg("spawn worker")
			if !s.everReady {
				s.fatal = err
				s.beginStop(false)
				return
			}
			s.failures++
			s.nextSpawn = now.Add(restartDelay(s.failures))
			return
		}
		if s.failures > 1 {
			return // in a crash loop: one at a time, each after its backoff
		}
	}
}

func (s *Supervisor) spawn(now time.Time) error {
	s.nextID++
	id := s.nextID
	w := &Worker{
		ID:         id,
		Generation: s.generation,
		Slot:       s.freeSlot(s.generation),
		SocketPath: filepath.Join(s.opts.RunDir, fmt.Sprintf("worker-%d.sock", id)),
		startedAt:  now,
	}
	w.state.Store(int32(Starting))
	requestLimit := s.recycleLimits(w, now)
	listenFile, err := listenUnix(w.SocketPath)
	if err != nil {
		return fmt.Errorf("spawn worker %d: %w", id, err)
	}
	defer listenFile.Close()
	master, child, err := controlPair()
	if err != nil {
		_ = os.Remove(w.SocketPath)
		return fmt.Errorf("spawn worker %d: %w", id, err)
	}
	defer child.Close()
	wlog := s.opts.Log.With().Str("component", "worker").Int("worker", id).Logger()
	proc, err := s.opts.Spawner.Spawn(spawn.Spec{
		ID:         id,
		Generation: s.generation,
		Listen:     listenFile,
		Control:    child,
		Stdout:     spawn.NewLineLogger(wlog, "stdout"),
		Stderr:     spawn.NewLineLogger(wlog, "stderr"),
	})
	if err != nil {
		_ = master.Close()
		_ = os.Remove(w.SocketPath)
		return fmt.Errorf("spawn worker %d: %w", id, err)
	}
	w.proc = proc
	w.Pid = proc.Pid()
	w.control = master
	w.controlDone = make(chan struct{})
	w.member = newMember(w, s.opts.Threads, requestLimit)
	s.workers[id] = w
	s.pool.add(w.member)
	s.log.Debug().Int("worker", id).Int("pid", w.Pid).Msg("worker spawned")
	s.opts.Observer.WorkerStarted(s.pool.info(w.member))
	s.wg.Add(2)
	go s.readControl(w)
	go s.waitExit(w)
	return nil
}

// learnPid records the pid of a worker whose process had none when it was spawned (a fork
// server forks it once it has imported the app).
func (s *Supervisor) learnPid(w *Worker, pid int) {
	if w.Pid == 0 && pid > 0 {
		s.pool.setPid(w.member, pid)
	}
}

// freeSlot is the lowest slot no live worker of generation gen holds (one on its way out
// after a recycle or a death no longer holds one).
func (s *Supervisor) freeSlot(gen int) int {
	taken := map[int]bool{}
	for _, w := range s.workers {
		if w.Generation == gen && w.cause == "" && w.State() != Dead {
			taken[w.Slot] = true
		}
	}
	slot := 0
	for taken[slot] {
		slot++
	}
	return slot
}

// controlDrain bounds how long, once a worker has exited, its control channel is still read.
const controlDrain = 50 * time.Millisecond

// waitExit is the one goroutine that waits for the worker's process.
func (s *Supervisor) waitExit(w *Worker) {
	defer s.wg.Done()
	st := w.proc.Wait()
	// Report the exit only after everything the worker said: a boot_error written just
	// before it exited must be known when its death is judged. What it wrote is in the
	// socket already; a child it forked may hold the socket open for ever, so the reader
	// gets a moment to take what is there, not until EOF.
	_ = w.control.SetReadDeadline(time.Now().Add(controlDrain))
	<-w.controlDone
	s.send(event{kind: evExited, worker: w, status: st})
}

// readControl reports what the worker says until its control channel closes.
func (s *Supervisor) readControl(w *Worker) {
	defer s.wg.Done()
	defer close(w.controlDone)
	sc := bufio.NewScanner(w.control)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var msg spawn.ControlMessage
		if err := json.Unmarshal(sc.Bytes(), &msg); err != nil {
			s.log.Warn().Int("worker", w.ID).Err(err).Msg("bad control message")
			continue
		}
		switch msg.Event {
		case "ready":
			ev := event{kind: evReady, worker: w, pid: msg.Pid}
			if msg.Link == "framed" {
				ev.framedSlots = max(msg.Slots, 1)
			}
			s.send(ev)
		case "boot_error":
			s.send(event{kind: evBootError, worker: w, boot: &BootError{
				WorkerID: w.ID, Kind: msg.Kind, Message: msg.Error, Traceback: msg.Traceback,
			}})
		}
	}
}

func (s *Supervisor) send(ev event) {
	select {
	case s.events <- ev:
	case <-s.done:
	}
}

// beginStop stops taking requests and tells every worker to go: at once, or after the
// requests it holds when graceful.
func (s *Supervisor) beginStop(graceful bool) {
	if !s.stopping {
		s.stopping = true
		s.pool.close()
		s.log.Info().Bool("graceful", graceful).Int("workers", len(s.workers)).Msg("stopping workers")
		s.failReloads(ErrStopping)
	}
	for _, w := range s.workers {
		if graceful && w.State().accepting() && !s.pool.idle(w.member) {
			s.drain(w)
			continue
		}
		s.stopWorker(w)
	}
}

func (s *Supervisor) drain(w *Worker) {
	if err := s.transition(w, Draining); err != nil {
		return
	}
	w.stopAt = time.Now()
	if s.pool.idle(w.member) { // its last request ended between the two calls
		s.stopWorker(w)
	}
}

// stopWorker closes the control channel, which makes the worker exit; SIGKILL follows at
// the graceful deadline if it has not.
func (s *Supervisor) stopWorker(w *Worker) {
	if st := w.State(); st == Stopping || st == Dead {
		return
	}
	if err := s.transition(w, Stopping); err != nil {
		s.log.Error().Err(err).Msg("stop worker")
		return
	}
	if w.stopAt.IsZero() {
		w.stopAt = time.Now()
	}
	_ = w.control.Close()
}

func (s *Supervisor) stopIdleDrained() {
	for _, w := range s.workers {
		if w.State() == Draining && s.pool.idle(w.member) {
			s.stopWorker(w)
		}
	}
}

// enforceDeadlines kills workers that overran their boot or stop deadline.
func (s *Supervisor) enforceDeadlines(now time.Time) {
	for _, w := range s.workers {
		state := w.State()
		switch {
		case w.killed:
		case state == Starting && now.Sub(w.startedAt) >= s.opts.BootTimeout:
			s.log.Error().Int("worker", w.ID).Dur("boot_timeout_ms", s.opts.BootTimeout).Msg("worker not ready in time, killing it")
			s.kill(w)
		case !w.killAt.IsZero() && !now.Before(w.killAt):
			s.log.Warn().Int("worker", w.ID).Int("pid", w.Pid).Msg("timed-out worker still alive after SIGABRT, killing it")
			s.kill(w)
		case (state == Stopping || state == Draining) && now.Sub(w.stopAt) >= s.opts.GracefulTimeout:
			s.log.Warn().Int("worker", w.ID).Dur("graceful_timeout_ms", s.opts.GracefulTimeout).Msg("worker did not stop in time, killing it")
			s.kill(w)
		}
	}
}

func (s *Supervisor) kill(w *Worker) {
	w.killed = true
	if err := w.proc.Signal(syscall.SIGKILL); err != nil {
		s.log.Error().Err(err).Int("worker", w.ID).Msg("kill worker")
	}
}

// nextWake is how long until the loop has something to do without an event.
func (s *Supervisor) nextWake(now time.Time) time.Duration {
	next := now.Add(time.Hour)
	earlier := func(at time.Time) {
		if !at.IsZero() && at.Before(next) {
			next = at
		}
	}
	if !s.stopping && s.fatal == nil && now.Before(s.nextSpawn) {
		earlier(s.nextSpawn)
	}
	if s.opts.MaxRSS > 0 {
		earlier(s.nextRSSCheck)
	}
	for _, w := range s.workers {
		state := w.State()
		switch {
		case w.killed:
		case state == Starting:
			earlier(w.startedAt.Add(s.opts.BootTimeout))
		case !w.killAt.IsZero():
			earlier(w.killAt)
		case state == Stopping || state == Draining:
			earlier(w.stopAt.Add(s.opts.GracefulTimeout))
		case w.cause == "":
			earlier(w.retireAt)
		}
	}
	return max(next.Sub(now), time.Millisecond)
}

// listenUnix creates the worker's listening socket and returns it as a file to hand over.
func listenUnix(path string) (*os.File, error) {
	_ = os.Remove(path)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	// The worker owns the socket from now on; closing our copy must not unlink its path.
	ln.SetUnlinkOnClose(false)
	f, err := ln.File()
	_ = ln.Close()
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	return f, nil
}

// controlPair makes the control channel: the master's end as a net.Conn, the worker's as a
// file to inherit. When the master's end closes, for any reason, the worker reads EOF and
// exits: that is how no worker outlives its master.
func controlPair() (net.Conn, *os.File, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("control socketpair: %w", err)
	}
	masterFile := os.NewFile(uintptr(fds[0]), "control-master")
	child := os.NewFile(uintptr(fds[1]), "control-worker")
	conn, err := net.FileConn(masterFile)
	_ = masterFile.Close()
	if err != nil {
		_ = child.Close()
		return nil, nil, fmt.Errorf("control socketpair: %w", err)
	}
	return conn, child, nil
}
