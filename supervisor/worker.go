package supervisor

import (
	"fmt"
	"net"
	"time"

	"github.com/herd-server/herd/supervisor/spawn"
)

// Worker is one worker process as the master sees it. Its identity fields are set before it
// joins the pool and never change; state, slots and counters are guarded by the pool's lock;
// the process fields belong to the supervisor loop.
type Worker struct {
	ID         int
	Generation int
	Pid        int
	SocketPath string

	// Guarded by Pool.mu.
	state    State
	slots    []*slot // all of them, free or not; set at spawn
	free     []*slot
	inflight int
	Requests uint64
	// unreachable: a connect was refused, so the process is gone though not reaped yet.
	unreachable bool
	// stuck: a request on it overran --timeout. It takes no more requests: the supervisor
	// kills it, and until then anything sent its way would hang as that request did.
	stuck bool
	// served counts the responses it gave in full; a worker that served is no crash loop.
	served uint64
	// leaving: it is to be replaced (reload, recycling, scale-down) and serves only
	// when no other worker can.
	leaving bool
	// requestLimit is its --max-requests (with jitter), 0 for none; limitNoted says the
	// supervisor was told it reached it.
	requestLimit uint64
	limitNoted   bool
	// serviceAvg is a moving average of how long its requests take (see followLocked).
	serviceAvg time.Duration

	// Owned by the supervisor loop.
	proc    spawn.Process
	control net.Conn
	// controlDone is closed when the control reader has reported all the worker said.
	controlDone chan struct{}
	startedAt   time.Time
	readyAt     time.Time
	stopAt      time.Time // when stopping started; the SIGKILL deadline counts from it
	killed      bool
	bootError   *BootError
	// cause is why the master ends it (reload, max_requests, timeout ...); empty until the
	// master decides so. A worker with a cause is no longer counted as capacity.
	cause ExitCause
	// retireAt is when --max-lifetime recycles it (zero: never).
	retireAt time.Time
	// killAt is when a worker that overran --timeout is SIGKILLed if the SIGABRT (which
	// dumps its stacks) has not ended it.
	killAt time.Time
}

// takesRequestsLocked reports whether the worker may be handed a request now.
func (w *Worker) takesRequestsLocked() bool {
	return w.state.accepting() && !w.unreachable && !w.stuck
}

// leavingLocked reports whether the worker should get requests only as a last resort.
func (w *Worker) leavingLocked() bool {
	return w.leaving || w.requestLimit > 0 && w.Requests >= w.requestLimit
}

// transition moves the worker to state to, or refuses an illegal move and changes nothing.
func (w *Worker) transition(to State) error {
	if !canTransition(w.state, to) {
		return fmt.Errorf("worker %d: illegal state change %s -> %s", w.ID, w.state, to)
	}
	w.state = to
	return nil
}

func (w *Worker) takeSlotLocked() *slot {
	n := len(w.free)
	s := w.free[n-1]
	w.free = w.free[:n-1]
	w.inflight++
	w.Requests++
	return s
}

func (w *Worker) returnSlotLocked(s *slot) {
	w.free = append(w.free, s)
	w.inflight--
}

// shownState is the state reported to the outside: Busy is derived (every slot taken)
// rather than stored, so the request path never writes the lifecycle state, which only
// the supervisor loop changes.
func (w *Worker) shownState() State {
	if w.state == Ready && len(w.free) == 0 {
		return Busy
	}
	return w.state
}

// BootError is what a worker reported when it could not import the app.
type BootError struct {
	WorkerID  int
	Kind      string
	Message   string
	Traceback string
}

func (e *BootError) Error() string {
	return fmt.Sprintf("worker %d could not load the app: %s", e.WorkerID, e.Message)
}
