// Package autoreload turns file changes into graceful reloads. A Watcher watches directory
// trees (with inotify through fsnotify, or by polling), drops the changes that are not the
// app's (bytecode, editor swap files, virtualenvs, .git ...), and folds each burst of changes
// into one Batch; the Loop runs the watchers (the app's source tree in development, a
// --touch-reload file in production), asks for one reload per settled batch, and remembers
// whether the code now on disk failed to load, for the development error page.
//
// It never starts or stops a worker itself: the Reloader does, through the same door as
// SIGHUP and `herd reload`. A Watcher owns its inotify descriptor and its one goroutine (Run)
// and never acts on a change itself.
package autoreload

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/herd-server/herd/supervisor"
)

// Reloader starts a graceful reload to a new generation. The channel gives its outcome: nil
// once the new generation serves, else why not (a *supervisor.BootError when the new code
// does not import), in which case the old generation keeps serving.
type Reloader interface {
	Reload() <-chan error
}

// Source is a watcher and the reason its batches give for a reload.
type Source struct {
	Reason  string // "files changed", "touch-reload"
	Watcher *Watcher
}

// Loop reloads on every batch its sources deliver, one reload at a time: changes made while
// a reload runs are held by the watcher and make exactly one more.
type Loop struct {
	Reloader Reloader
	Sources  []Source
	Log      zerolog.Logger
	// State, when set, records whether the last reload failed (development mode).
	State *State
	// firstOutcome, when set, gives the outcome of the first generation (AwaitFirstBoot).
	firstOutcome <-chan error
}

// AwaitFirstBoot has the loop take the first generation's outcome from outcome (development
// mode): code that does not import at start is recorded in State like a failed reload, and
// State is unsettled until then. Call it before Run and before serving requests.
func (l *Loop) AwaitFirstBoot(outcome <-chan error) {
	l.firstOutcome = outcome
	if l.State != nil {
		l.State.mu.Lock()
		l.State.unsettled = make(chan struct{})
		l.State.mu.Unlock()
	}
}

type trigger struct {
	reason string
	batch  Batch
}

// Run runs the watchers and reloads until ctx is done, then returns once the watchers have
// stopped.
func (l *Loop) Run(ctx context.Context) {
	log := l.Log.With().Str("component", "reload").Logger()
	triggers := make(chan trigger)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, src := range l.Sources {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := src.Watcher.Run(ctx); err != nil {
				log.Error().Err(err).Str("reason", src.Reason).Msg("watcher stopped: changes are no longer seen")
			}
		}()
		go func() {
			defer wg.Done()
			forward(ctx, src, triggers)
		}()
	}
	firstOutcome := l.firstOutcome
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-firstOutcome:
			firstOutcome = nil
			l.firstBoot(log, err)
		case tr := <-triggers:
			l.reload(ctx, log, tr)
		}
	}
}

// firstBoot records how the first generation started. A failure's traceback is in the log
// already, once, from the supervisor.
func (l *Loop) firstBoot(log zerolog.Logger, err error) {
	if err == nil {
		l.State.settle()
		return
	}
	l.State.Fail(err, nil)
	log.Error().Err(err).Msg("the app does not load: requests get the error page until a fix is saved")
}

// forward hands a watcher's batches to the loop until the watcher closes them.
func forward(ctx context.Context, src Source, triggers chan<- trigger) {
	for b := range src.Watcher.Batches() {
		select {
		case triggers <- trigger{reason: src.Reason, batch: b}:
		case <-ctx.Done():
			// Run is over: drain until the watcher, stopped by the same ctx, closes.
		}
	}
}

func (l *Loop) reload(ctx context.Context, log zerolog.Logger, tr trigger) {
	start := time.Now()
	log.Info().Str("reason", tr.reason).Strs("changed", tr.batch.Paths).Int("changes", tr.batch.Changes).
		Dur("settled_ms", start.Sub(tr.batch.First)).Msg("change detected: reloading")
	var err error
	select {
	case err = <-l.Reloader.Reload():
	case <-ctx.Done():
		return
	}
	took := time.Since(start)
	if err == nil {
		wasBroken := l.State != nil && l.State.Current() != nil
		l.State.Clear()
		ev := log.Info().Dur("took_ms", took)
		if wasBroken {
			ev.Msg("reloaded: the code loads again and the new generation serves")
		} else {
			ev.Msg("reloaded: the new generation serves")
		}
		return
	}
	if l.State == nil {
		log.Error().Err(err).Dur("took_ms", took).Msg("reload failed: the old generation keeps serving")
		return
	}
	l.State.Fail(err, tr.batch.Paths)
	// A BootError's traceback is in the log already, once, from the supervisor.
	log.Error().Err(err).Dur("took_ms", took).Msg("reload failed: requests get the error page until a fix is saved")
}

// State is whether the code on disk failed to load at the last reload. Its methods are safe
// for concurrent use; a nil *State records nothing.
type State struct {
	mu      sync.Mutex
	failure *Failure
	// unsettled, when not nil, is closed once the first generation's outcome is known.
	unsettled chan struct{}
}

// Failure is a reload, or the first start, that did not take.
type Failure struct {
	Err       error
	Traceback string   // the worker's, when the code did not import
	Changed   []string // the files whose change led to it; none at start
	At        time.Time
}

// Settled is closed once the first generation has started or failed to, when the state
// awaits that (AwaitFirstBoot): until then a request cannot tell whether it is to get the
// error page.
func (s *State) Settled() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unsettled == nil {
		return closedChan
	}
	return s.unsettled
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// settle marks the first generation's outcome known.
func (s *State) settle() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unsettled != nil {
		close(s.unsettled)
		s.unsettled = nil
	}
}

// Current is the failure in force, or nil when the code loaded.
func (s *State) Current() *Failure {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failure
}

// Fail records a failure to load the code.
func (s *State) Fail(err error, changed []string) {
	if s == nil {
		return
	}
	f := &Failure{Err: err, Changed: changed, At: time.Now()}
	var boot *supervisor.BootError
	if errors.As(err, &boot) {
		f.Traceback = boot.Traceback
	}
	s.mu.Lock()
	s.failure = f
	s.mu.Unlock()
	s.settle()
}

// Clear records that the code loaded.
func (s *State) Clear() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.failure = nil
	s.mu.Unlock()
	s.settle()
}
