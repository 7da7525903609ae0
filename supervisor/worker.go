package supervisor

import (
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/herd-server/herd/supervisor/spawn"
)

// Worker is one worker process as the supervisor sees it: its identity, its lifecycle state
// and its process. The supervisor's loop owns it; what the request path needs to know of the
// worker (its slots, what they carry, its counters) is the pool's, in the member the
// supervisor registered for it.
type Worker struct {
	// Identity: set at spawn, never changed.
	ID         int
	Generation int
	// Slot is the worker's place in its generation, 0..workers-1: the replacement of a
	// worker that died or was recycled takes its slot, so per-worker metrics keep their
	// series across processes.
	Slot int
	// Pid is 0 until known when a fork server forks the worker (once it imported the
	// app); the loop then sets it under the pool's lock, which status pages read it under.
	Pid        int
	SocketPath string
	startedAt  time.Time

	// state is written only by Supervisor.transition (in the loop) and read anywhere: the
	// pool reads it under its lock to decide whether the worker takes requests.
	state atomic.Int32
	// member is the pool's record of this worker.
	member *member

	// Owned by the supervisor loop.
	proc    spawn.Process
	control net.Conn
	// controlDone is closed when the control reader has reported all the worker said.
	controlDone chan struct{}
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

// State is where the worker is in its life.
func (w *Worker) State() State { return State(w.state.Load()) }

// transition is the one place a worker's state changes. It refuses an illegal move and then
// changes nothing; a legal one also does what the move means for the pool: a worker that
// became ready serves the requests waiting for a slot, a dead one leaves the pool.
// The loop alone calls it.
func (s *Supervisor) transition(w *Worker, to State) error {
	from := w.State()
	if !canTransition(from, to) {
		return fmt.Errorf("worker %d: illegal state change %s -> %s", w.ID, from, to)
	}
	w.state.Store(int32(to))
	switch to {
	case Ready:
		s.pool.serveWaiters()
	case Dead:
		s.pool.remove(w.member)
	}
	return nil
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
