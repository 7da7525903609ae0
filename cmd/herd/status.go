package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/herd-server/herd/admin"
	"github.com/herd-server/herd/config"
	"github.com/herd-server/herd/supervisor"
	"github.com/herd-server/herd/supervisor/spawn"
)

// Status is the answer to the control command status, and what `herd status --json` prints.
type Status struct {
	Pid     int       `json:"pid"`
	App     string    `json:"app"`
	HTTP    []string  `json:"http"`
	Started time.Time `json:"started"`
	UptimeS float64   `json:"uptime_s"`
	Queue   int       `json:"queue"`
	// Restarts counts workers that left without being asked (crash, timeout, recycling)
	// and were replaced. Worker ids are not reused, so it is the master's count.
	Restarts uint64 `json:"restarts"`
	// LastReload is the outcome of the latest reload, nil before the first one.
	LastReload *ReloadStatus  `json:"last_reload,omitempty"`
	Workers    []WorkerStatus `json:"workers"`
}

// ReloadStatus is how a reload ended: a failed one (the new code did not load) leaves the
// old generation serving, and says why.
type ReloadStatus struct {
	Generation int       `json:"generation"`
	At         time.Time `json:"at"`
	OK         bool      `json:"ok"`
	Error      string    `json:"error,omitempty"`
}

// WorkerStatus is one worker process in Status.
type WorkerStatus struct {
	ID         int              `json:"id"`
	Pid        int              `json:"pid"`
	State      string           `json:"state"`
	Generation int              `json:"generation"`
	Requests   uint64           `json:"requests"`
	InFlight   int              `json:"in_flight"`
	RSS        int64            `json:"rss_bytes"`
	UptimeS    float64          `json:"uptime_s"`
	Current    []CurrentRequest `json:"current"`
}

// CurrentRequest is a request a worker is serving now.
type CurrentRequest struct {
	Method string  `json:"method"`
	URI    string  `json:"uri"`
	AgeS   float64 `json:"age_s"`
}

func buildStatus(cfg *config.Config, pool *supervisor.Pool, exits *exitCounter, httpAddrs []string, started, now time.Time) Status {
	st := Status{
		Pid: os.Getpid(), App: cfg.App, HTTP: httpAddrs, Started: started, UptimeS: now.Sub(started).Seconds(),
		Queue: pool.QueueLen(), Restarts: exits.restarts.Load(), Workers: []WorkerStatus{},
		LastReload: exits.lastReload.Load(),
	}
	for _, w := range pool.Workers() {
		ws := WorkerStatus{
			ID: w.ID, Pid: w.Pid, State: w.State.String(), Generation: w.Generation, Requests: w.Requests,
			InFlight: w.InFlight, RSS: workerRSS(w.Pid), UptimeS: now.Sub(w.Started).Seconds(), Current: []CurrentRequest{},
		}
		for _, c := range w.Current {
			ws.Current = append(ws.Current, CurrentRequest{Method: c.Method, URI: c.URI, AgeS: now.Sub(c.Since).Seconds()})
		}
		st.Workers = append(st.Workers, ws)
	}
	slices.SortFunc(st.Workers, func(a, b WorkerStatus) int { return a.ID - b.ID })
	return st
}

// workerRSS is 0 when the process just went away.
func workerRSS(pid int) int64 {
	rss, _ := admin.ProcessRSS(pid)
	return rss
}

// printStatus writes the human form of `herd status`.
func printStatus(w io.Writer, st Status) {
	fmt.Fprintf(w, "herd master pid %d serving %s on %s, up %s, %d request(s) queued, %d worker restart(s)\n\n",
		st.Pid, st.App, strings.Join(st.HTTP, ", "), (time.Duration(st.UptimeS) * time.Second).String(), st.Queue, st.Restarts)
	if r := st.LastReload; r != nil && r.OK {
		fmt.Fprintf(w, "last reload: generation %d took over at %s\n\n", r.Generation, r.At.Format(time.RFC3339))
	} else if r != nil {
		fmt.Fprintf(w, "last reload FAILED at %s (generation %d), the previous generation keeps serving:\n  %s\n\n",
			r.At.Format(time.RFC3339), r.Generation, r.Error)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKER\tPID\tSTATE\tGEN\tREQUESTS\tRSS\tCURRENT REQUEST\tAGE")
	for _, ws := range st.Workers {
		cur, age := "-", "-"
		if len(ws.Current) > 0 {
			c := ws.Current[0]
			cur = c.Method + " " + c.URI
			age = fmt.Sprintf("%.1fs", c.AgeS)
			if len(ws.Current) > 1 {
				cur += fmt.Sprintf(" (+%d more)", len(ws.Current)-1)
			}
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%d\t%d\t%s\t%s\t%s\n", ws.ID, ws.Pid, ws.State, ws.Generation, ws.Requests,
			fmt.Sprintf("%.1fMiB", float64(ws.RSS)/(1<<20)), cur, age)
	}
	_ = tw.Flush()
}

// exitCounter hears worker exits for the status: every exit the master did not ask for is
// a restart (the supervisor replaces the worker).
type exitCounter struct {
	supervisor.NopObserver
	restarts   atomic.Uint64
	lastReload atomic.Pointer[ReloadStatus]
}

func (c *exitCounter) Reloaded(gen int, err error) {
	r := &ReloadStatus{Generation: gen, At: time.Now(), OK: err == nil}
	if err != nil {
		r.Error = err.Error()
	}
	c.lastReload.Store(r)
}

func (c *exitCounter) WorkerExited(_ supervisor.WorkerInfo, _ spawn.ExitStatus, cause supervisor.ExitCause) {
	switch cause {
	case supervisor.CauseStop, supervisor.CauseScaleDown, supervisor.CauseReload:
	default:
		c.restarts.Add(1)
	}
}
