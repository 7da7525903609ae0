package admin

import (
	"fmt"
	"strings"
	"time"
)

// TopScreen renders Stats as `herd top` shows them: a summary, then one line per worker,
// each line cut to width and at most height lines (the terminal's size; 0: no limit).
func TopScreen(st Stats, width, height int) []string {
	state := "ready"
	switch {
	case st.Draining:
		state = "draining"
	case !st.Ready:
		state = "not ready"
	}
	ready := 0
	for _, w := range st.Workers {
		if w.State == "ready" || w.State == "busy" {
			ready++
		}
	}
	lines := []string{
		fmt.Sprintf("herd %s  pid %d  up %s  generation %d  %s  workers %d (%d taking requests)  queue %d  in flight %d",
			st.Version, st.Pid, shortDuration(st.UptimeS), st.Generation, state, len(st.Workers), ready, st.Queue, st.InFlight),
		fmt.Sprintf("req/s %.1f (10 s) %.1f (60 s)  p50 %s  p99 %s  requests %d  restarts %d",
			st.Last10s.PerSecond, st.Last60s.PerSecond, ms(st.Last10s.P50), ms(st.Last10s.P99), st.Requests, st.Restarts),
		"",
		fmt.Sprintf("%-7s %-8s %-4s %-9s %9s %5s %9s %8s  %s", "WORKER", "PID", "GEN", "STATE", "REQUESTS", "BUSY", "RSS", "UPTIME", "CURRENT REQUEST"),
	}
	for _, w := range st.Workers {
		var cur []string
		for _, c := range w.Current {
			cur = append(cur, fmt.Sprintf("%s %s (%s)", c.Method, c.URI, ms(c.AgeMs)))
		}
		lines = append(lines, fmt.Sprintf("%-7d %-8d %-4d %-9s %9d %5d %9s %8s  %s", w.ID, w.Pid, w.Generation, w.State,
			w.Requests, w.InFlight, mib(w.RSS), shortDuration(w.UptimeS), strings.Join(cur, ", ")))
	}
	if height > 0 && len(lines) > height-1 { // the last row holds the key help
		lines = lines[:height-1]
	}
	lines = append(lines, "q quits")
	for i, l := range lines {
		if width > 0 && len(l) > width {
			lines[i] = l[:width]
		}
	}
	return lines
}

func ms(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.2f s", v/1000)
	}
	if v < 10 {
		return fmt.Sprintf("%.2f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

func mib(b int64) string { return fmt.Sprintf("%.1fM", float64(b)/(1<<20)) }

func shortDuration(s float64) string {
	d := time.Duration(s) * time.Second
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}
