package admin

import (
	"os"
	"strings"
	"time"

	"github.com/herd-server/herd/proxy"
	"github.com/herd-server/herd/supervisor"
	"github.com/herd-server/herd/supervisor/daemon"
	"github.com/herd-server/herd/supervisor/spawn"
)

// Stats is the /stats document, in the spirit of uWSGI's stats server: the master, its
// listeners, the traffic, and each worker with what it is doing now.
//
// It is the one status shape: /stats, the dashboard, `herd status` (and its --json) and
// `herd top` all show it.
type Stats struct {
	Version    string                          `json:"version"`
	App        string                          `json:"app"`
	Pid        int                             `json:"pid"`
	Started    time.Time                       `json:"started"`
	UptimeS    float64                         `json:"uptime_s"`
	Generation int                             `json:"generation"`
	Ready      bool                            `json:"ready"`
	Draining   bool                            `json:"draining"`
	Listeners  []string                        `json:"listeners"`
	Requests   uint64                          `json:"requests"`
	InFlight   int64                           `json:"in_flight"`
	Queue      int                             `json:"queue"`
	Last10s    Summary                         `json:"last_10s"`
	Last60s    Summary                         `json:"last_60s"`
	Exits      map[supervisor.ExitCause]uint64 `json:"exits"`
	// Restarts counts the workers that left without being asked to (crash, timeout,
	// recycling) and were replaced; a reload, a stop or a scale-down is no restart.
	Restarts   uint64        `json:"restarts"`
	LastReload *ReloadInfo   `json:"last_reload,omitempty"`
	Workers    []WorkerStats `json:"workers"`
	// Daemons are the --attach-daemon processes the master supervises.
	Daemons []daemon.Status `json:"daemons,omitempty"`
	// ForkServers are the fork servers the workers are forked from (--preload, and
	// development mode's template); absent when workers are exec'd.
	ForkServers *ForkServersStats `json:"fork_servers,omitempty"`
	// WebSockets counts the WebSockets the master relays to asgi workers.
	WebSockets *proxy.WebSocketCounts `json:"websockets,omitempty"`
}

// ForkServersStats are the fork server processes (--preload) and their counters.
type ForkServersStats struct {
	Servers []ForkServerStats `json:"servers"`
	Starts  uint64            `json:"starts"`
	// Deaths: fork servers that died unasked (each was replaced; their workers served on).
	Deaths uint64 `json:"deaths"`
}

// ForkServerStats is one fork server in Stats.
type ForkServerStats struct {
	spawn.ForkServerInfo
	RSS     int64   `json:"rss_bytes"`
	UptimeS float64 `json:"uptime_s"`
}

// WorkerStats is one worker process in Stats.
type WorkerStats struct {
	ID         int              `json:"id"`
	Pid        int              `json:"pid"`
	Generation int              `json:"generation"`
	State      string           `json:"state"`
	Requests   uint64           `json:"requests"`
	InFlight   int              `json:"in_flight"`
	Slots      int              `json:"slots"` // requests it serves at once
	Link       string           `json:"link"`  // uwsgi, or framed (an asgi worker)
	RSS        int64            `json:"rss_bytes"`
	UptimeS    float64          `json:"uptime_s"`
	Current    []CurrentRequest `json:"current"`
	// Forked: a fork server forked it (--preload); false when it was exec'd.
	Forked bool `json:"forked,omitempty"`
}

// CurrentRequest is a request a worker serves now, with its age.
type CurrentRequest struct {
	Method string  `json:"method"`
	URI    string  `json:"uri"`
	AgeMs  float64 `json:"age_ms"`
}

// Info is what the admin side is told about the master at start.
type Info struct {
	Version   string
	App       string
	Listeners []string
	// ShowQuery keeps the query strings of the requests in flight; otherwise each is
	// replaced by "?..." (see RedactQuery).
	ShowQuery bool
	// Daemons reports the supervised daemons; nil when there are none.
	Daemons func() []daemon.Status
	// ForkServers reports the fork servers; nil when the workers are exec'd.
	ForkServers func() spawn.ForkServerStatus
}

// RedactQuery hides a request target's query string: it may carry a token or a password,
// and /stats is read by pages and tools that should not see those.
func RedactQuery(uri string) string {
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		return uri[:i] + "?..."
	}
	return uri
}

// Stats assembles the document at now: /stats, the dashboard's events and the control
// socket's stats command (herd top) all serve it.
func (m *Metrics) Stats(now time.Time, info Info) Stats {
	st := Stats{
		Version:    info.Version,
		App:        info.App,
		Pid:        os.Getpid(),
		Started:    m.started,
		UptimeS:    now.Sub(m.started).Seconds(),
		Draining:   m.draining.Load(),
		Listeners:  info.Listeners,
		Requests:   m.total.Load(),
		InFlight:   m.inFlight.Load(),
		Queue:      m.pool.QueueLen(),
		Last10s:    m.window.summary(now, 10),
		Last60s:    m.window.summary(now, 60),
		Exits:      make(map[supervisor.ExitCause]uint64),
		Workers:    []WorkerStats{},
		Generation: 1,
	}
	m.mu.Lock()
	st.Generation = m.generation
	st.LastReload = m.lastReload
	for c, n := range m.exitCounts {
		st.Exits[c] = n
		if c != supervisor.CauseStop && c != supervisor.CauseScaleDown && c != supervisor.CauseReload {
			st.Restarts += n
		}
	}
	m.mu.Unlock()
	if m.webSockets != nil {
		counts := m.webSockets.Counts()
		st.WebSockets = &counts
	}
	for _, w := range m.pool.Workers() {
		ws := WorkerStats{
			ID: w.ID, Pid: w.Pid, Generation: w.Generation, State: w.Shown(),
			Requests: w.Requests, InFlight: w.InFlight, UptimeS: now.Sub(w.Started).Seconds(),
			Current: []CurrentRequest{}, Forked: info.ForkServers != nil, Slots: w.Slots, Link: "uwsgi",
		}
		if w.Framed {
			ws.Link = "framed"
		}
		ws.RSS, _ = ProcessRSS(w.Pid) // 0 when the process just went away
		for _, c := range w.Current {
			uri := c.URI
			if !info.ShowQuery {
				uri = RedactQuery(uri)
			}
			ws.Current = append(ws.Current, CurrentRequest{Method: c.Method, URI: uri, AgeMs: float64(now.Sub(c.Since).Microseconds()) / 1000})
		}
		st.Workers = append(st.Workers, ws)
		if accepting(w.State) {
			st.Ready = true
		}
	}
	st.Ready = st.Ready && !st.Draining
	if info.Daemons != nil {
		st.Daemons = info.Daemons()
	}
	if info.ForkServers != nil {
		st.ForkServers = forkServersStats(info.ForkServers(), now)
	}
	return st
}

func forkServersStats(fs spawn.ForkServerStatus, now time.Time) *ForkServersStats {
	out := &ForkServersStats{Servers: []ForkServerStats{}, Starts: fs.Starts, Deaths: fs.Deaths}
	for _, srv := range fs.Servers {
		s := ForkServerStats{ForkServerInfo: srv, UptimeS: now.Sub(srv.Started).Seconds()}
		if srv.Pid > 0 {
			s.RSS, _ = ProcessRSS(srv.Pid)
		}
		out.Servers = append(out.Servers, s)
	}
	return out
}
