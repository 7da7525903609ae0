package autoreload

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Engine is how changes are noticed.
type Engine string

// Engines.
const (
	// Auto uses inotify and falls back to polling when the inotify watch limit is reached.
	Auto Engine = "auto"
	// Inotify uses inotify only: hitting the watch limit is an error.
	Inotify Engine = "inotify"
	// Poll walks the trees and compares modification times and sizes.
	Poll Engine = "poll"
)

// Defaults of the WatchOptions durations.
const (
	DefaultQuiet        = 50 * time.Millisecond
	DefaultBurstQuiet   = 200 * time.Millisecond
	DefaultMaxWait      = 2 * time.Second
	DefaultPollInterval = 250 * time.Millisecond
)

// burstSize is how many distinct changed paths make a burst rather than a save.
const burstSize = 16

// WatchOptions configure a Watcher.
type WatchOptions struct {
	Roots  []Root
	Engine Engine // default Auto
	// Quiet is how long no change must follow the last one before a batch is delivered. An
	// editor's save (write, rename, chmod) comes within a few milliseconds, so a short quiet
	// keeps reloads fast.
	Quiet time.Duration
	// BurstQuiet replaces Quiet once a batch holds burstSize paths: a tool rewriting many
	// files (git checkout, a formatter) may pause longer between two of them, and must still
	// make one batch.
	BurstQuiet time.Duration
	// MaxWait caps how long a batch is held back while changes keep coming.
	MaxWait time.Duration
	// PollInterval is the least time between two scans when polling; a tree that takes long
	// to scan is scanned less often.
	PollInterval time.Duration
	// WatchLimit, when > 0, stands in for the kernel's fs.inotify.max_user_watches: adding
	// more directory watches fails as the kernel's limit does (ENOSPC). Tests use it to
	// reach the limit without root.
	WatchLimit int
	Log        zerolog.Logger
}

// Batch is a burst of changes, delivered once it has settled.
type Batch struct {
	Paths   []string // the first few changed paths, in the order first seen
	Changes int      // how many distinct paths changed
	First   time.Time
}

// maxBatchPaths bounds Batch.Paths: a log line names a few files, not a checkout's 500.
const maxBatchPaths = 8

// Watcher watches its roots and delivers batches of changes.
type Watcher struct {
	opts   WatchOptions
	log    zerolog.Logger
	out    chan Batch
	notify *notifier // nil when polling
	poll   *poller   // nil when using inotify
	engine atomic.Value
}

// New sets the watches up (so that a bad path or the watch limit shows before anything
// else starts) and returns the Watcher; Run then delivers batches. Call Run or Close.
func NewWatcher(opts WatchOptions) (*Watcher, error) {
	opts = withDefaults(opts)
	if len(opts.Roots) == 0 {
		return nil, errors.New("watch: nothing to watch")
	}
	w := &Watcher{opts: opts, log: opts.Log.With().Str("component", "watch").Logger(), out: make(chan Batch)}
	switch opts.Engine {
	case Poll:
		w.startPolling()
	case Auto, Inotify:
		n, err := newNotifier(opts.Roots, opts.WatchLimit)
		switch {
		case err == nil:
			w.notify = n
			w.engine.Store(Inotify)
			w.log.Info().Str("engine", "inotify").Int("directories", n.watches()).Strs("roots", rootDirs(opts.Roots)).Msg("watching for changes")
		case isWatchLimit(err) && opts.Engine == Auto:
			w.log.Error().Err(err).Msg(watchLimitAdvice(opts.PollInterval))
			w.startPolling()
		default:
			if isWatchLimit(err) {
				err = fmt.Errorf("%w; %s", err, sysctlAdvice)
			}
			return nil, err
		}
	default:
		return nil, fmt.Errorf("watch: unknown engine %q (auto, inotify or poll)", opts.Engine)
	}
	return w, nil
}

func withDefaults(o WatchOptions) WatchOptions {
	if o.Engine == "" {
		o.Engine = Auto
	}
	if o.Quiet <= 0 {
		o.Quiet = DefaultQuiet
	}
	if o.BurstQuiet < o.Quiet {
		o.BurstQuiet = max(DefaultBurstQuiet, o.Quiet)
	}
	if o.MaxWait <= 0 {
		o.MaxWait = DefaultMaxWait
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	return o
}

func (w *Watcher) startPolling() {
	w.poll = newPoller(w.opts.Roots)
	w.engine.Store(Poll)
	w.log.Info().Str("engine", "poll").Int("files", w.poll.files()).Dur("scan_ms", w.poll.lastScan).
		Dur("interval_ms", w.poll.interval(w.opts.PollInterval)).Strs("roots", rootDirs(w.opts.Roots)).Msg("watching for changes")
}

// Batches delivers one Batch per settled burst of changes. It is closed when Run returns.
func (w *Watcher) Batches() <-chan Batch { return w.out }

// Engine is the engine in use now: Inotify, or Poll (asked for, or fallen back to).
func (w *Watcher) Engine() Engine { return w.engine.Load().(Engine) }

// Close releases the inotify descriptor of a Watcher whose Run was never called.
func (w *Watcher) Close() error {
	if w.notify != nil {
		return w.notify.close()
	}
	return nil
}

// Run watches until ctx is done, then closes Batches and releases the watches.
func (w *Watcher) Run(ctx context.Context) error {
	defer close(w.out)
	defer w.Close()
	var pending batcher
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	pollTimer := time.NewTimer(time.Hour)
	defer pollTimer.Stop()
	if w.poll != nil {
		pollTimer.Reset(w.poll.interval(w.opts.PollInterval))
	}
	add := func(paths []string) {
		if len(paths) > 0 {
			timer.Reset(pending.add(paths, w.debounce(), time.Now())) // no stale tick can follow: Go 1.23 timers
		}
	}
	for {
		var out chan<- Batch
		if pending.ready {
			out = w.out
		}
		var fsEvents <-chan fsEvent
		var fsErrors <-chan error
		if w.notify != nil {
			fsEvents, fsErrors = w.notify.events(), w.notify.errors()
		}
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fsEvents:
			if !ok {
				return errors.New("watch: inotify closed unexpectedly")
			}
			changed, err := w.notify.handle(ev)
			add(changed)
			if err != nil {
				add(w.notifyFailed(err, ev.Name, pollTimer))
			}
		case err := <-fsErrors:
			add(w.notifyFailed(err, "", pollTimer))
		case <-pollTimer.C:
			add(w.poll.scan())
			pollTimer.Reset(w.poll.interval(w.opts.PollInterval))
		case <-timer.C:
			pending.settle(w.debounce(), time.Now(), timer)
		case out <- pending.batch():
			pending = batcher{}
		}
	}
}

// debounce is the WatchOptions the batcher uses. When polling, a burst is still being written
// if the next scan finds more of it: a batch settles only after a scan found nothing new,
// so the quiet periods are counted on top of a poll interval.
func (w *Watcher) debounce() WatchOptions {
	o := w.opts
	if w.poll != nil {
		interval := w.poll.interval(o.PollInterval)
		o.Quiet += interval
		o.BurstQuiet += interval
		o.MaxWait = max(o.MaxWait, 4*interval)
	}
	return o
}

// notifyFailed handles an inotify failure while running. Lost events (queue overflow) or a
// watch that could not be added mean changes may go unseen: the answer is a change (the
// caller reloads to be safe) and, at the watch limit, polling from now on.
func (w *Watcher) notifyFailed(err error, path string, pollTimer *time.Timer) []string {
	if path == "" {
		path = "(inotify event queue overflow)"
	}
	if !isWatchLimit(err) {
		w.log.Warn().Err(err).Msg("inotify lost events: treating it as a change")
		return []string{path}
	}
	if w.opts.Engine == Inotify {
		w.log.Error().Err(err).Str("path", path).Msg("inotify watch limit reached: changes under this directory are not seen; " + sysctlAdvice)
		return []string{path}
	}
	w.log.Error().Err(err).Msg(watchLimitAdvice(w.opts.PollInterval))
	_ = w.notify.close()
	w.notify = nil
	w.startPolling()
	pollTimer.Reset(w.poll.interval(w.opts.PollInterval))
	return []string{path}
}

const sysctlAdvice = "raise the limit with `sysctl -w fs.inotify.max_user_watches=524288` " +
	"(and a line fs.inotify.max_user_watches=524288 in /etc/sysctl.d/90-inotify.conf to keep it)"

func watchLimitAdvice(interval time.Duration) string {
	return fmt.Sprintf("inotify watch limit reached: falling back to polling every %s or more; %s", interval, sysctlAdvice)
}

func rootDirs(roots []Root) []string {
	var out []string
	for _, r := range roots {
		out = append(out, r.Dir)
	}
	return out
}

// batcher folds changes into one pending batch.
type batcher struct {
	seen  map[string]bool
	paths []string
	first time.Time
	last  time.Time
	ready bool
}

// add records changed paths and returns how long until the batch may settle.
func (b *batcher) add(paths []string, o WatchOptions, now time.Time) time.Duration {
	if b.seen == nil {
		b.seen = make(map[string]bool)
		b.first = now
	}
	for _, p := range paths {
		if !b.seen[p] {
			b.seen[p] = true
			if len(b.paths) < maxBatchPaths {
				b.paths = append(b.paths, p)
			}
		}
	}
	b.last = now
	b.ready = false
	return b.due(o).Sub(now)
}

// due is when the batch settles: after a quiet period since the last change, but no later
// than MaxWait after the first.
func (b *batcher) due(o WatchOptions) time.Time {
	quiet := o.Quiet
	if len(b.seen) >= burstSize {
		quiet = o.BurstQuiet
	}
	return minTime(b.last.Add(quiet), b.first.Add(o.MaxWait))
}

// settle marks the batch ready when its time has come, else re-arms the timer.
func (b *batcher) settle(o WatchOptions, now time.Time, timer *time.Timer) {
	if b.seen == nil {
		return
	}
	if due := b.due(o); now.Before(due) {
		timer.Reset(due.Sub(now))
		return
	}
	b.ready = true
}

func (b *batcher) batch() Batch {
	return Batch{Paths: b.paths, Changes: len(b.seen), First: b.first}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
