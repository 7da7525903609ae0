package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/herd-server/herd/admin"
)

// printStatus writes the human form of `herd status`.
func printStatus(w io.Writer, st admin.Stats) {
	fmt.Fprintf(w, "herd master pid %d serving %s on %s, up %s, %d request(s) queued, %d worker restart(s)\n\n",
		st.Pid, st.App, strings.Join(st.Listeners, ", "), (time.Duration(st.UptimeS) * time.Second).String(), st.Queue, st.Restarts)
	if r := st.LastReload; r != nil && r.OK {
		fmt.Fprintf(w, "last reload: generation %d took over at %s\n\n", r.Generation, r.At.Format(time.RFC3339))
	} else if r != nil {
		fmt.Fprintf(w, "last reload FAILED at %s (generation %d), the previous generation keeps serving:\n  %s\n\n",
			r.At.Format(time.RFC3339), r.Generation, r.Error)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKER\tPID\tSTATE\tGEN\tREQUESTS\tBUSY\tRSS\tCURRENT REQUEST\tAGE")
	for _, ws := range st.Workers {
		cur, age := "-", "-"
		if len(ws.Current) > 0 {
			c := ws.Current[0]
			cur = c.Method + " " + c.URI
			age = fmt.Sprintf("%.1fs", c.AgeMs/1000)
			if len(ws.Current) > 1 {
				cur += fmt.Sprintf(" (+%d more)", len(ws.Current)-1)
			}
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%d\t%d\t%d/%d\t%s\t%s\t%s\n", ws.ID, ws.Pid, ws.State, ws.Generation, ws.Requests,
			ws.InFlight, ws.Slots, fmt.Sprintf("%.1fMiB", float64(ws.RSS)/(1<<20)), cur, age)
	}
	_ = tw.Flush()
	printForkServers(w, st.ForkServers)
	if ws := st.WebSockets; ws != nil && ws.Accepted > 0 {
		fmt.Fprintf(w, "\nWebSockets: %d open, %d accepted; messages %d in, %d out\n", ws.Open, ws.Accepted, ws.MessagesIn, ws.MessagesOut)
	}
	if len(st.Daemons) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DAEMON\tPID\tSTATE\tRESTARTS\tSINCE")
	for _, d := range st.Daemons {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\n", d.Command, d.Pid, d.State, d.Restarts, d.Since.Format(time.TimeOnly))
	}
	_ = tw.Flush()
}

// printForkServers lists the fork servers the workers are forked from (--preload).
func printForkServers(w io.Writer, fs *admin.ForkServersStats) {
	if fs == nil {
		return
	}
	fmt.Fprintf(w, "\nworkers forked from a fork server (--preload): %d started, %d died\n", fs.Starts, fs.Deaths)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FORK SERVER PID\tSTATE\tGEN\tFORKS\tWORKERS\tRSS\tUP")
	for _, s := range fs.Servers {
		role := strconv.Itoa(s.Pid)
		if s.Template {
			role += " (template)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%.1fMiB\t%s\n", role, s.State, s.Generation, s.Forks, s.Children,
			float64(s.RSS)/(1<<20), (time.Duration(s.UptimeS) * time.Second).String())
	}
	_ = tw.Flush()
}
