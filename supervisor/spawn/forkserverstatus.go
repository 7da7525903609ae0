package spawn

import "time"

// ForkServerInfo is one fork server process, for status pages.
type ForkServerInfo struct {
	Pid        int       `json:"pid"` // 0 while a template forks it
	Generation int       `json:"generation"`
	Template   bool      `json:"template,omitempty"`
	State      string    `json:"state"` // starting, ready, retiring (ends with its last worker), stale
	Python     string    `json:"python,omitempty"`
	Started    time.Time `json:"started"`
	Forks      uint64    `json:"forks"`    // processes it forked
	Children   int       `json:"children"` // of those, alive
}

// ForkServerStatus is what the fork servers are and did: the processes not reaped yet, and
// counters since the master started.
type ForkServerStatus struct {
	Servers []ForkServerInfo `json:"servers"`
	Starts  uint64           `json:"starts"`
	// Deaths counts the fork servers that died without being let go (each was replaced).
	Deaths uint64 `json:"deaths"`
}

// Status describes the fork servers now.
func (f *ForkServer) Status() ForkServerStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := ForkServerStatus{Servers: []ForkServerInfo{}, Starts: f.starts, Deaths: f.crashes}
	for _, srv := range append(append([]*forkServer{}, f.templates...), f.servers...) {
		if srv.state == serverGone {
			continue
		}
		state := "starting"
		switch {
		case srv.stale:
			state = "stale"
		case srv.retired || srv.closing:
			state = "retiring"
		case srv.state == serverReady:
			state = "ready"
		}
		st.Servers = append(st.Servers, ForkServerInfo{Pid: srv.pid, Generation: srv.gen, Template: srv.template,
			State: state, Python: srv.python, Started: srv.startedAt, Forks: srv.forks, Children: len(srv.children)})
	}
	return st
}
