package supervisor

import (
	"time"

	"github.com/herd-server/herd/supervisor/spawn"
)

// ExitCause says why a worker left, for metrics and logs.
type ExitCause string

// Causes of a worker's exit. The lifecycle features add their own (max-requests, rss,
// timeout, reload) as they land.
const (
	CauseCrash       ExitCause = "crash"        // it died without being asked to
	CauseBootError   ExitCause = "boot_error"   // it could not load the app
	CauseBootTimeout ExitCause = "boot_timeout" // it did not say ready in time
	CauseStop        ExitCause = "stop"         // the master stopped it
	CauseReload      ExitCause = "reload"       // replaced by a new generation
	CauseMaxRequests ExitCause = "max_requests" // recycled after --max-requests
	CauseMaxLifetime ExitCause = "max_lifetime" // recycled after --max-lifetime
	CauseRSS         ExitCause = "rss"          // recycled after --reload-on-rss
	CauseTimeout     ExitCause = "timeout"      // killed for a request over --timeout
	CauseScaleDown   ExitCause = "scale_down"   // TTOU or a smaller --workers
)

// Observer hears what the supervisor does, for metrics and status pages. Its methods are
// called from the supervisor's loop: they must return quickly and must not call back into
// the supervisor.
type Observer interface {
	WorkerStarted(w WorkerInfo)
	WorkerReady(w WorkerInfo, boot time.Duration)
	WorkerExited(w WorkerInfo, st spawn.ExitStatus, cause ExitCause)
	// Reloaded reports the end of a reload to generation gen: err is nil when the new
	// generation took over, else why it did not (the old one keeps serving).
	Reloaded(gen int, err error)
}

// NopObserver ignores everything.
type NopObserver struct{}

func (NopObserver) WorkerStarted(WorkerInfo)                             {}
func (NopObserver) WorkerReady(WorkerInfo, time.Duration)                {}
func (NopObserver) WorkerExited(WorkerInfo, spawn.ExitStatus, ExitCause) {}
func (NopObserver) Reloaded(int, error)                                  {}

// Observers fans every event out to several observers (metrics, a service manager's
// notifier ...), in order.
type Observers []Observer

func (obs Observers) WorkerStarted(w WorkerInfo) {
	for _, o := range obs {
		o.WorkerStarted(w)
	}
}

func (obs Observers) WorkerReady(w WorkerInfo, boot time.Duration) {
	for _, o := range obs {
		o.WorkerReady(w, boot)
	}
}

func (obs Observers) WorkerExited(w WorkerInfo, st spawn.ExitStatus, cause ExitCause) {
	for _, o := range obs {
		o.WorkerExited(w, st, cause)
	}
}

func (obs Observers) Reloaded(gen int, err error) {
	for _, o := range obs {
		o.Reloaded(gen, err)
	}
}
