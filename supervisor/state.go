package supervisor

import "fmt"

// State is where a worker is in its life. It changes only through Supervisor.transition,
// which refuses illegal moves, so every path a worker can take is in the table below.
type State int

const (
	// Starting: the process runs but has not said ready yet; it takes no requests.
	Starting State = iota
	// Ready: it takes requests (whether a slot is free is the pool's to know: a ready
	// worker whose slots all carry a request is shown "busy", see WorkerInfo).
	Ready
	// Draining: it takes no new requests and finishes what it holds (reload, recycle, stop).
	Draining
	// Stopping: told to exit (control channel closed, then signals); nothing is sent to it.
	Stopping
	// Dead: the process has been reaped.
	Dead
)

var stateNames = [...]string{"starting", "ready", "draining", "stopping", "dead"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// legalTransitions lists, for each state, the states it may move to. Dead is final. Any
// state may die: a process can be killed at any moment.
var legalTransitions = map[State][]State{
	Starting: {Ready, Stopping, Dead},
	Ready:    {Draining, Stopping, Dead},
	Draining: {Stopping, Dead},
	Stopping: {Dead},
	Dead:     nil,
}

func canTransition(from, to State) bool {
	for _, s := range legalTransitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// accepting reports whether a worker in state s may be handed new requests.
func (s State) accepting() bool { return s == Ready }

// alive reports whether the process has not been reaped yet.
func (s State) alive() bool { return s != Dead }
