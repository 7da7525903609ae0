package supervisor

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Everything here replaces workers that are alive and well: reloads to a new generation,
// scaling, recycling (max-requests, max-lifetime, RSS) and killing a worker that overran
// --timeout. One rule serves all of them: a worker to be replaced is marked with its cause
// (it "retires") and stops counting as capacity, so reconcile starts its replacement; it
// keeps serving, as a last resort, until enough current workers are ready (rotate), then
// drains its requests in flight and exits. Capacity therefore never drops below the wanted
// number of ready workers while a replacement boots.

var (
	// ErrStopping answers a reload asked for while the supervisor stops.
	ErrStopping = errors.New("supervisor is stopping: reload abandoned")
	// ErrNotRunning answers a reload asked for after Run returned.
	ErrNotRunning = errors.New("supervisor is not running")
)

// timeoutKillGrace is how long a worker that overran --timeout has, after the SIGABRT that
// makes faulthandler write its stacks, before SIGKILL.
const timeoutKillGrace = 2 * time.Second

// rssCheckEvery is how often --reload-on-rss reads the workers' resident memory.
const rssCheckEvery = time.Second

// reloadRun is a reload in progress.
type reloadRun struct {
	gen     int
	started time.Time
	waiters []chan error
}

// Reload asks for a graceful reload: a new generation of workers starts, and each old worker
// stops taking requests only once a new one is ready; then it finishes what it holds (up to
// GracefulTimeout) and exits. The channel (buffered) gets nil once the new generation has
// taken over, or the error that ended the reload (a *BootError when the new code does not
// import); the old generation then keeps serving.
//
// Reloads asked for while one runs are queued and run together, as one more reload, when it
// ends: the code may have changed again since the running one started.
func (s *Supervisor) Reload() <-chan error {
	ch := make(chan error, 1)
	s.reqMu.Lock()
	if s.finished {
		s.reqMu.Unlock()
		ch <- ErrNotRunning
		return ch
	}
	s.reloadReqs = append(s.reloadReqs, ch)
	s.reqMu.Unlock()
	s.nudge()
	return ch
}

// Scale changes the wanted number of workers by delta (TTIN +1, TTOU -1), never below one.
// A worker removed finishes its requests in flight first.
func (s *Supervisor) Scale(delta int) {
	s.reqMu.Lock()
	s.scaleReq += delta
	s.reqMu.Unlock()
	s.nudge()
}

// noteOverrun is the pool's report that a request on w overran RequestTimeout. It is
// called with the pool's lock held, from a request goroutine.
func (s *Supervisor) noteOverrun(w *Worker) {
	s.reqMu.Lock()
	s.overran = append(s.overran, w)
	s.reqMu.Unlock()
	s.nudge()
}

// finish answers the requests left when Run returns.
func (s *Supervisor) finish() {
	s.reqMu.Lock()
	s.finished = true
	pending := s.reloadReqs
	s.reloadReqs = nil
	s.reqMu.Unlock()
	for _, ch := range pending {
		ch <- ErrNotRunning
	}
}

// takeRequests applies what other goroutines asked for since the last step.
func (s *Supervisor) takeRequests(now time.Time) {
	s.reqMu.Lock()
	reloads, delta, overran := s.reloadReqs, s.scaleReq, s.overran
	s.reloadReqs, s.scaleReq, s.overran = nil, 0, nil
	s.reqMu.Unlock()

	for _, w := range overran {
		s.killOverran(w, now)
	}
	if delta != 0 && !s.stopping {
		before := s.opts.Workers
		s.opts.Workers = max(1, s.opts.Workers+delta)
		s.log.Info().Int("from", before).Int("to", s.opts.Workers).Msg("scaling workers")
	}
	if len(reloads) == 0 {
		return
	}
	switch {
	case s.stopping || s.fatal != nil:
		for _, ch := range reloads {
			ch <- ErrStopping
		}
	case s.reload != nil || !s.everReady && !s.awaitingFix:
		// After the reload in progress, or once the first generation is up (or, with
		// AwaitFix, has failed).
		s.queued = append(s.queued, reloads...)
	default:
		s.startReload(reloads, now)
	}
}

// startReload begins a new generation: every worker there is now retires.
func (s *Supervisor) startReload(waiters []chan error, now time.Time) {
	s.generation++
	s.reload = &reloadRun{gen: s.generation, started: now, waiters: waiters}
	s.awaitingFix = false
	// An explicit reload is a fresh start: a crash loop's backoff must not delay it.
	s.failures = 0
	s.nextSpawn = time.Time{}
	for _, w := range s.workers {
		if st := w.State(); w.cause == "" && (st == Starting || st.accepting()) {
			s.retire(w, CauseReload)
		}
	}
	s.log.Info().Int("generation", s.generation).Int("workers", s.opts.Workers).Bool("chain", s.opts.ChainReload).
		Msg("reload started")
}

// startQueued starts the reloads asked for during the one that just ended.
func (s *Supervisor) startQueued(now time.Time) {
	if len(s.queued) == 0 || s.reload != nil || s.stopping || s.fatal != nil || !s.everReady && !s.awaitingFix {
		return
	}
	waiters := s.queued
	s.queued = nil
	s.startReload(waiters, now)
}

// inReload reports whether w belongs to the generation a reload in progress is starting.
func (s *Supervisor) inReload(w *Worker) bool {
	return s.reload != nil && w.Generation == s.reload.gen
}

func (s *Supervisor) chainReloading() bool {
	return s.opts.ChainReload && s.reload != nil
}

// checkReload ends the reload in progress once the new generation has the wanted number of
// ready workers, and starts a queued one.
func (s *Supervisor) checkReload(now time.Time) {
	if s.reload == nil {
		s.startQueued(now)
		return
	}
	ready := 0
	for _, w := range s.workers {
		if s.inReload(w) && w.cause == "" && w.State().accepting() {
			ready++
		}
	}
	if ready < s.opts.Workers {
		return
	}
	r := s.reload
	s.reload = nil
	s.lastTrace = "" // a later failure is news again, even with the same traceback
	s.log.Info().Int("generation", r.gen).Dur("took_ms", now.Sub(r.started)).Msg("reload done")
	s.opts.Observer.Reloaded(r.gen, nil)
	for _, ch := range r.waiters {
		ch <- nil
	}
	s.startQueued(now)
}

// abortReload gives up the reload in progress: its workers still booting are stopped and
// the old generation takes requests again as before.
func (s *Supervisor) abortReload(cause error) {
	r := s.reload
	if r == nil {
		return
	}
	s.reload = nil
	readyNew := 0
	for _, w := range s.workers {
		if w.Generation != r.gen || w.cause != "" {
			continue
		}
		switch st := w.State(); {
		case st == Starting:
			w.cause = CauseStop
			s.stopWorker(w)
		case st.accepting():
			readyNew++
		}
	}
	// Old workers, newest first, come back as current, as many as are wanted.
	keep := s.opts.Workers - readyNew
	for _, w := range s.sortedWorkers(true) {
		if keep <= 0 {
			break
		}
		if w.cause == CauseReload && w.State().accepting() {
			w.cause = ""
			s.pool.setLeaving(w.member, false)
			keep--
		}
	}
	if !s.everReady {
		// AwaitFix, and no generation ever started: nothing to fall back to, and no point
		// starting the same code again before the next reload.
		s.awaitingFix = true
		s.log.Error().Int("generation", r.gen).Err(cause).Msg("reload failed: the new code could not start either")
	} else {
		s.log.Error().Int("generation", r.gen).Err(cause).
			Msg("reload failed: the new code could not start, the previous workers keep serving")
	}
	s.opts.Observer.Reloaded(r.gen, cause)
	for _, ch := range r.waiters {
		ch <- cause
	}
}

// failReloads answers every reload in progress or queued with err (the supervisor stops).
func (s *Supervisor) failReloads(err error) {
	if r := s.reload; r != nil {
		s.reload = nil
		s.opts.Observer.Reloaded(r.gen, err)
		for _, ch := range r.waiters {
			ch <- err
		}
	}
	for _, ch := range s.queued {
		ch <- err
	}
	s.queued = nil
}

// retire marks w to be replaced for cause. It keeps serving until rotate drains it.
func (s *Supervisor) retire(w *Worker, cause ExitCause) {
	w.cause = cause
	s.pool.setLeaving(w.member, true)
}

// census counts the workers by what they mean for capacity.
type census struct {
	current  int // not retiring, starting or accepting
	ready    int // not retiring, accepting
	starting int // not retiring, starting
	alive    int // every process not reaped, whatever its state
}

func (s *Supervisor) census() census {
	var c census
	for _, w := range s.workers {
		st := w.State()
		c.alive++
		if w.cause != "" {
			continue
		}
		switch {
		case st == Starting:
			c.current++
			c.starting++
		case st.accepting():
			c.current++
			c.ready++
		}
	}
	return c
}

// sortedWorkers lists the workers by id, newest first when newestFirst.
func (s *Supervisor) sortedWorkers(newestFirst bool) []*Worker {
	out := make([]*Worker, 0, len(s.workers))
	for _, w := range s.workers {
		out = append(out, w)
	}
	slices.SortFunc(out, func(a, b *Worker) int {
		if newestFirst {
			return b.ID - a.ID
		}
		return a.ID - b.ID
	})
	return out
}

// retireSurplus retires n current workers after a scale-down: those still booting first
// (they serve nobody yet), then the oldest, as gunicorn's TTOU does.
func (s *Supervisor) retireSurplus(n int) {
	for _, starting := range []bool{true, false} {
		for _, w := range s.sortedWorkers(starting) {
			if n == 0 {
				return
			}
			if st := w.State(); w.cause == "" && (st == Starting) == starting && (starting || st.accepting()) {
				s.retire(w, CauseScaleDown)
				n--
			}
		}
	}
}

// rotate stops the retiring workers that are no longer needed for capacity: one still
// starting at once, one serving (drained: it finishes its requests) as soon as enough
// current workers are ready to take its place. The oldest go first.
func (s *Supervisor) rotate() {
	if s.stopping {
		return
	}
	c := s.census()
	allowed := max(0, s.opts.Workers-c.ready) // retiring workers still needed to serve
	var serving []*Worker
	for _, w := range s.sortedWorkers(true) {
		if w.cause == "" || w.cause == CauseTimeout {
			continue
		}
		switch st := w.State(); {
		case st == Starting:
			s.stopWorker(w)
		case st.accepting():
			serving = append(serving, w)
		}
	}
	for i, w := range serving {
		if i >= allowed {
			s.log.Info().Int("worker", w.ID).Int("pid", w.Pid).Int("generation", w.Generation).Str("cause", string(w.cause)).
				Msg("retiring worker: finishing its requests in flight")
			s.drain(w)
		}
	}
}

// recycleLimits gives a new worker its own lifetime, and returns its request limit (0:
// none): the jitter keeps workers started together from all leaving together.
func (s *Supervisor) recycleLimits(w *Worker, now time.Time) uint64 {
	var limit uint64
	if s.opts.MaxRequests > 0 {
		limit = uint64(s.opts.MaxRequests)
		if s.opts.MaxRequestsJitter > 0 {
			limit += uint64(rand.IntN(s.opts.MaxRequestsJitter + 1))
		}
	}
	if s.opts.MaxLifetime > 0 {
		w.retireAt = now.Add(s.opts.MaxLifetime + rand.N(s.opts.MaxLifetime/10+1))
	}
	return limit
}

// recycle retires the workers that reached --max-requests, --max-lifetime or
// --reload-on-rss.
func (s *Supervisor) recycle(now time.Time) {
	if s.stopping {
		return
	}
	checkRSS := s.opts.MaxRSS > 0 && !now.Before(s.nextRSSCheck)
	if checkRSS {
		s.nextRSSCheck = now.Add(rssCheckEvery)
	}
	for _, w := range s.sortedWorkers(false) {
		if w.cause != "" || !w.State().accepting() {
			continue
		}
		log := s.log.Info().Int("worker", w.ID).Int("pid", w.Pid)
		switch {
		case s.pool.requestLimitReached(w.member):
			log.Msg("worker reached --max-requests: replacing it")
			s.retire(w, CauseMaxRequests)
		case !w.retireAt.IsZero() && !now.Before(w.retireAt):
			log.Dur("lived_ms", now.Sub(w.startedAt)).Msg("worker reached --max-lifetime: replacing it")
			s.retire(w, CauseMaxLifetime)
		case checkRSS:
			rss, err := residentBytes(w.Pid)
			if err != nil || rss <= s.opts.MaxRSS {
				continue
			}
			log.Int64("rss_mib", rss>>20).Int64("limit_mib", s.opts.MaxRSS>>20).Msg("worker exceeds --reload-on-rss: replacing it")
			s.retire(w, CauseRSS)
		}
	}
}

// residentBytes reads a process's resident set size from /proc.
func residentBytes(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0, fmt.Errorf("read rss of %d: %w", pid, err)
	}
	fields := strings.Fields(string(b))
	if len(fields) < 2 {
		return 0, fmt.Errorf("read rss of %d: short statm %q", pid, b)
	}
	pages, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read rss of %d: %w", pid, err)
	}
	return pages * int64(os.Getpagesize()), nil
}

// killOverran ends a worker whose request overran --timeout. SIGABRT first: the worker's
// faulthandler writes every thread's Python stack to stderr (hence to the log) and the
// process aborts; SIGKILL follows if it has not gone within timeoutKillGrace. Its
// replacement starts at once, since it no longer counts as capacity.
func (s *Supervisor) killOverran(w *Worker, now time.Time) {
	if _, ok := s.workers[w.ID]; !ok || w.cause == CauseTimeout || w.killed {
		return // reaped already, or being killed
	}
	w.cause = CauseTimeout
	if w.stopAt.IsZero() {
		w.stopAt = now
	}
	w.killAt = now.Add(timeoutKillGrace)
	if st := w.State(); st != Stopping {
		_ = s.transition(w, Stopping)
	}
	s.log.Error().Int("worker", w.ID).Int("pid", w.Pid).Dur("timeout_ms", s.opts.RequestTimeout).
		Msg("request timed out: the worker's stacks follow, then it is killed and replaced")
	if err := w.proc.Signal(syscall.SIGABRT); err != nil {
		s.log.Error().Err(err).Int("worker", w.ID).Msg("signal timed-out worker")
	}
}
