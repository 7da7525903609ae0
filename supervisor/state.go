package supervisor

import "fmt"

// State is where a worker is in its life. It changes only through Worker.transition, which
// refuses illegal moves, so every path a worker can take is in the table below.
type State int

const (
	// Starting: the process runs but has not said ready yet; it takes no requests.
	Starting State = iota
	// Ready: it takes requests and has at least one free slot.
	Ready
	// Busy: ready, but every slot carries a request. Only reported (see shownState):
	// the request path does not write the state, so the loop may read it without a lock.
	Busy
	// Draining: it takes no new requests and finishes what it holds (reload, recycle, stop).
	Draining
	// Stopping: told to exit (control channel closed, then signals); nothing is sent to it.
	Stopping
	// Dead: the process has been reaped.
	Dead
)

var stateNames = [...]string{"starting", "ready", "busy", "draining", "stopping", "dead"}

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
	Ready:    {Busy, Draining, Stopping, Dead},
	Busy:     {Ready, Draining, Stopping, Dead},
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
func (s State) accepting() bool { return s == Ready || s == Busy }

// alive reports whether the process has not been reaped yet.
func (s State) alive() bool { return s != Dead }
