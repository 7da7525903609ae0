package herdtest

import (
	"fmt"
	"time"

	"github.com/herd-server/herd/admin/control"
)

// Status is the part of a running master's status that tests wait on, as its control socket
// answers the stats command. admin.Stats is the whole shape; herdtest cannot import admin
// (admin imports proxy and supervisor, whose own tests import herdtest).
type Status struct {
	InFlight int64          `json:"in_flight"`
	Queue    int            `json:"queue"` // requests waiting for a free worker
	Workers  []WorkerStatus `json:"workers"`
}

// WorkerStatus is one worker process in Status.
type WorkerStatus struct {
	Pid      int              `json:"pid"`
	State    string           `json:"state"`
	Requests uint64           `json:"requests"` // taken so far, the ones it serves now included
	InFlight int              `json:"in_flight"`
	Current  []CurrentRequest `json:"current"`
}

// CurrentRequest is a request a worker serves now.
type CurrentRequest struct {
	Method string  `json:"method"`
	URI    string  `json:"uri"`
	AgeMs  float64 `json:"age_ms"`
}

// Serving returns the pid of a worker that serves a request for uri now and that request, or
// 0 and nil.
func (st Status) Serving(uri string) (int, *CurrentRequest) {
	for _, w := range st.Workers {
		for i, c := range w.Current {
			if c.URI == uri {
				return w.Pid, &w.Current[i]
			}
		}
	}
	return 0, nil
}

// Taken is how many requests the workers have taken so far, the ones in flight included.
func (st Status) Taken() uint64 {
	var n uint64
	for _, w := range st.Workers {
		n += w.Requests
	}
	return n
}

// Status asks the master's control socket for its status.
func (in *Instance) Status() (Status, error) {
	var st Status
	err := control.Call(in.ControlSocket(), "stats", nil, &st, 5*time.Second)
	return st, err
}

// WaitStatus waits until the master's status satisfies cond, and returns that status; what
// names the awaited state for the failure.
func (in *Instance) WaitStatus(limit time.Duration, what string, cond func(Status) bool) Status {
	in.t.Helper()
	var st Status
	EventuallyNil(in.t, limit, what, func() error {
		var err error
		if st, err = in.Status(); err != nil {
			return err
		}
		if !cond(st) {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	return st
}

// WaitServing waits until a worker serves a request for uri (path and query, as sent), and
// returns that worker's pid: a test then knows its request is in the app, not on its way.
func (in *Instance) WaitServing(uri string, limit time.Duration) int {
	in.t.Helper()
	pid, _ := in.WaitStatus(limit, "a worker serving "+uri, func(st Status) bool {
		pid, _ := st.Serving(uri)
		return pid != 0
	}).Serving(uri)
	return pid
}

// ControlSocket is the path of the master's control socket, from its start-up log line.
func (in *Instance) ControlSocket() string {
	in.t.Helper()
	return in.startLine().Str("control_socket")
}

// startLine is the master's start-up log line.
func (in *Instance) startLine() Event {
	in.t.Helper()
	ev, _, ok := in.WaitEvent(0, 10*time.Second, IsMsg("herd is starting"))
	if !ok {
		in.t.Fatal("no start-up log line")
	}
	return ev
}
