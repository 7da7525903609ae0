package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Where a request's time goes, herd beside Granian (issue 18, item 5). Each of the two is
// started per app, warmed, and loaded three times at the first connection count, its
// processes split in two groups: the root (herd's master, which does all the HTTP; Granian's
// main process, which only supervises) and its descendants (herd's Python workers; Granian's
// workers, which run Rust's HTTP and the Python app in one process).
//   1. CPU per request: utime and stime of each group from /proc over the load, divided by
//      the requests wrk counted.
//   2. System calls and context switches per request: `perf stat -e raw_syscalls:sys_enter,
//      context-switches` attached to each group during a second load. Counting costs little,
//      so the server runs at its pace and batches as it does unobserved. A process that
//      sleeps and is woken for every request shows about two switches per request, and
//      comes back to cold caches each time.
//   3. Which system calls: `strace -c -f` attached to each group during a third load. ptrace
//      slows the server several fold (its requests/s mean nothing) but the calls a request
//      makes keep their shape; where a call's count depends on load (epoll waits, futex
//      wake-ups), perf's total is the one to believe.

// whereServers are the two servers compared.
var whereServers = []string{"herd", "granian"}

// whereSettle is how long perf and strace get to attach before the load starts.
const whereSettle = time.Second

// whereSide is one group of a server's processes and what it spent per request.
type whereSide struct {
	name      string
	pids      []int
	user, sys time.Duration // CPU per request
	syscalls  float64       // per request (perf stat), -1 when not measured
	switches  float64       // context switches per request (perf stat), -1 when not measured
	traced    float64       // per request (strace -c, all calls), -1 when not measured
	top       []syscallCount
}

// syscallCount is one system call's calls per request.
type syscallCount struct {
	name   string
	perReq float64
}

// whereResult is one server with one app.
type whereResult struct {
	app, server string
	rps         float64 // requests/s of the CPU load
	sides       []whereSide
	na          string
}

// whereTools says which tracers work here: perf's tracepoints need perf_event_paranoid and
// tracefs to allow them.
type whereTools struct{ perf, strace bool }

func detectWhereTools() whereTools {
	var t whereTools
	t.perf = exec.Command("perf", "stat", "-e", "raw_syscalls:sys_enter", "true").Run() == nil
	_, err := exec.LookPath("strace")
	t.strace = err == nil
	return t
}

// measureWhere measures herd and Granian on every app of the plan that both serve.
func measureWhere(ctx context.Context, e *env, p plan, res *results) ([]whereResult, error) {
	if p.where <= 0 {
		return nil, nil
	}
	tools := detectWhereTools()
	var out []whereResult
	for _, a := range p.apps {
		if a.static {
			continue
		}
		for _, key := range whereServers {
			i := slices.IndexFunc(allServers, func(s server) bool { return s.key == key })
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			r, err := whereOne(ctx, e, p, allServers[i], a, tools)
			if err != nil {
				return nil, err
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// whereOne starts s with a and runs the three loads.
func whereOne(ctx context.Context, e *env, p plan, s server, a app, tools whereTools) (whereResult, error) {
	r := whereResult{app: a.name, server: s.key}
	script, err := writeWrkScript(e.tmp, a)
	if err != nil {
		return r, err
	}
	inst, err := s.launch(e, a)
	var na notAvailable
	if errors.As(err, &na) {
		r.na = err.Error()
		return r, nil
	}
	if err != nil {
		return r, err
	}
	defer inst.stop()
	args := wrkArgs(script, p.conns[0], p.where, inst.url)
	if p.warmup > 0 {
		if _, err := runWrk(ctx, wrkArgs(script, p.conns[0], p.warmup, inst.url)); err != nil {
			return r, fmt.Errorf("where: warm-up of %s: %w", s.key, err)
		}
	}
	root := inst.procs[0].cmd.Process.Pid
	var workers []int
	for _, st := range sampleTrees([]int{root}).procs {
		if st.pid != root {
			workers = append(workers, st.pid)
		}
	}
	rootName := "master"
	if s.key != "herd" {
		rootName = "main process"
	}
	r.sides = []whereSide{{name: rootName, pids: []int{root}}, {name: "workers", pids: workers}}
	if err := whereCPU(ctx, &r, args); err != nil {
		return r, err
	}
	for i := range r.sides {
		r.sides[i].syscalls, r.sides[i].switches, r.sides[i].traced = -1, -1, -1
	}
	if tools.perf {
		if err := wherePerf(ctx, e, &r, args); err != nil {
			return r, err
		}
	}
	if tools.strace {
		if err := whereStrace(ctx, e, &r, args); err != nil {
			return r, err
		}
	}
	p.log("bench: where %-7s %-8s %7.0f req/s  %s", a.name, s.key, r.rps, r.summary())
	return r, nil
}

// summary is one line of a result for the log.
func (r whereResult) summary() string {
	var parts []string
	for _, s := range r.sides {
		parts = append(parts, fmt.Sprintf("%s: %.1f+%.1f us/req, %.1f syscalls/req, %.2f switches/req", s.name,
			us(s.user), us(s.sys), s.syscalls, s.switches))
	}
	return strings.Join(parts, "; ")
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// groupTicks is the user and system clock ticks of a group of processes (all threads).
func groupTicks(pids []int) (user, sys uint64) {
	for _, pid := range pids {
		if st, ok := readStat(pid); ok {
			user += st.cpuTicks - st.sysTicks
			sys += st.sysTicks
		}
	}
	return user, sys
}

// whereCPU is load 1: each group's CPU time over the load, per request.
func whereCPU(ctx context.Context, r *whereResult, args []string) error {
	type ticks struct{ user, sys uint64 }
	before := make([]ticks, len(r.sides))
	for i, s := range r.sides {
		before[i].user, before[i].sys = groupTicks(s.pids)
	}
	l, err := runWrk(ctx, args)
	if err != nil {
		return fmt.Errorf("where: CPU load of %s: %w", r.server, err)
	}
	if l.requests == 0 {
		return fmt.Errorf("where: %s answered no request", r.server)
	}
	r.rps = l.rps()
	tick := time.Second / clockTicks
	for i, s := range r.sides {
		user, sys := groupTicks(s.pids)
		r.sides[i].user = time.Duration(user-before[i].user) * tick / time.Duration(l.requests)
		r.sides[i].sys = time.Duration(sys-before[i].sys) * tick / time.Duration(l.requests)
	}
	return nil
}

// attachDuring runs one tracer per group (cmd(i, out) is its command, writing to out), lets
// them attach, runs the load, then stops them with SIGINT, on which both perf and strace
// write their summary and detach. It returns the load and the output files.
func attachDuring(ctx context.Context, e *env, r *whereResult, tool string, cmd func(i int, out string) []string,
	args []string) (load, []string, error) {
	var procs []*proc
	var outs []string
	defer func() {
		for _, p := range procs {
			running.stop(p, syscall.SIGINT, 10*time.Second)
		}
	}()
	for i, s := range r.sides {
		out := filepath.Join(e.tmp, fmt.Sprintf("%s-%s-%s-%d.txt", tool, r.server, r.app, i))
		argv := cmd(i, out)
		c := exec.Command(argv[0], argv[1:]...)
		c.Stderr = nil // strace's "attached" lines
		p, err := running.start(tool+" "+s.name, c)
		if err != nil {
			return load{}, nil, err
		}
		procs, outs = append(procs, p), append(outs, out)
	}
	select {
	case <-time.After(whereSettle):
	case <-ctx.Done():
		return load{}, nil, ctx.Err()
	}
	for _, p := range procs {
		if p.exited() {
			return load{}, nil, fmt.Errorf("where: %s exited at once (%v)", tool, p.err)
		}
	}
	l, err := runWrk(ctx, args)
	if err != nil {
		return load{}, nil, fmt.Errorf("where: %s load of %s: %w", tool, r.server, err)
	}
	for _, p := range procs {
		running.stop(p, syscall.SIGINT, 10*time.Second)
	}
	procs = nil
	if l.requests == 0 {
		return load{}, nil, fmt.Errorf("where: %s answered no request under %s", r.server, tool)
	}
	return l, outs, nil
}

func pidList(pids []int, sep string) string {
	s := make([]string, len(pids))
	for i, p := range pids {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, sep)
}

// perfEvents are what perf stat counts: system calls, and how often a thread was switched
// out (it slept, or was preempted).
var perfEvents = []string{"raw_syscalls:sys_enter", "context-switches"}

// perfArgs is the perf command for one group; the report shows it with PIDS for the list.
func perfArgs(out, pids string) []string {
	return []string{"perf", "stat", "-x", ",", "-e", strings.Join(perfEvents, ","), "-o", out, "-p", pids}
}

// straceArgs is the strace command for one group.
func straceArgs(out string, pids []string) []string {
	args := []string{"strace", "-c", "-f", "-o", out}
	for _, p := range pids {
		args = append(args, "-p", p)
	}
	return args
}

// wherePerf is load 2: system calls per request, by perf's counting tracepoint.
func wherePerf(ctx context.Context, e *env, r *whereResult, args []string) error {
	e.noteCommand("where/perf", perfArgs("TMP/perf-GROUP.txt", "PIDS"))
	l, outs, err := attachDuring(ctx, e, r, "perf", func(i int, out string) []string {
		return perfArgs(out, pidList(r.sides[i].pids, ","))
	}, args)
	if err != nil {
		return err
	}
	for i, out := range outs {
		n, err := parsePerfCounts(out)
		if err != nil {
			return fmt.Errorf("where: perf stat of %s %s: %w", r.server, r.sides[i].name, err)
		}
		r.sides[i].syscalls = float64(n[perfEvents[0]]) / float64(l.requests)
		r.sides[i].switches = float64(n[perfEvents[1]]) / float64(l.requests)
	}
	return nil
}

// parsePerfCounts reads perf stat -x , output: the count of each of perfEvents.
func parsePerfCounts(path string) (map[string]int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ",")
		if len(f) < 3 || !slices.Contains(perfEvents, f[2]) {
			continue
		}
		if f[0] == "<not counted>" {
			out[f[2]] = 0 // no thread of the group ran while perf watched
			continue
		}
		if out[f[2]], err = strconv.ParseInt(f[0], 10, 64); err != nil {
			return nil, fmt.Errorf("perf stat line %q: %w", line, err)
		}
	}
	for _, ev := range perfEvents {
		if _, ok := out[ev]; !ok {
			return nil, fmt.Errorf("no %s line in %q", ev, b)
		}
	}
	return out, nil
}

// whereStrace is load 3: which system calls, by strace -c -f.
func whereStrace(ctx context.Context, e *env, r *whereResult, args []string) error {
	e.noteCommand("where/strace", straceArgs("TMP/strace-GROUP.txt", []string{"PID1", "PID2"}))
	l, outs, err := attachDuring(ctx, e, r, "strace", func(i int, out string) []string {
		return straceArgs(out, strings.Split(pidList(r.sides[i].pids, ","), ","))
	}, args)
	if err != nil {
		return err
	}
	for i, out := range outs {
		counts, total, err := parseStrace(out)
		if err != nil {
			return fmt.Errorf("where: strace of %s %s: %w", r.server, r.sides[i].name, err)
		}
		r.sides[i].traced = float64(total) / float64(l.requests)
		for _, c := range counts {
			if per := float64(c.calls) / float64(l.requests); per >= 0.05 {
				r.sides[i].top = append(r.sides[i].top, syscallCount{c.name, per})
			}
		}
	}
	return nil
}

// straceCall is one row of strace -c's table.
type straceCall struct {
	name  string
	calls int64
}

// parseStrace reads strace -c's table: rows between the first two rules, calls in the
// fourth column (errors, when any, in the fifth), the name last. Largest count first. strace
// writes no table for processes that made no call.
func parseStrace(path string) ([]straceCall, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	var out []straceCall
	var total int64
	rules := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "------") {
			rules++
			continue
		}
		fields := strings.Fields(line)
		if rules != 1 || len(fields) < 5 {
			continue
		}
		n, err := strconv.ParseInt(fields[3], 10, 64)
		if err != nil {
			return nil, 0, fmt.Errorf("strace row %q: %w", line, err)
		}
		out = append(out, straceCall{fields[len(fields)-1], n})
		total += n
	}
	// No table: strace saw no system call at all (Granian's main process, idle under load).
	slices.SortStableFunc(out, func(a, b straceCall) int { return int(b.calls - a.calls) })
	return out, total, sc.Err()
}

// renderWhere is the section: one row per group of processes, one for each server's whole,
// and the app's floor.
func renderWhere(b *strings.Builder, p plan, res *results) {
	if len(res.where) == 0 {
		return
	}
	fmt.Fprintf(b, "\n### Where the time goes: herd beside Granian\n\nPer request, each server started "+
		"per app, warmed, then loaded three times with `wrk -c%d` for %v (same Python, same app): "+
		"**CPU** is utime + stime of each group of processes (every thread) from /proc over the "+
		"first load, divided by the requests wrk counted; **system calls** and **context switches** "+
		"are `perf stat -e raw_syscalls:sys_enter,context-switches` attached to each group during "+
		"the second (counting costs little: the server runs at its own pace; a process that sleeps "+
		"and is woken for each request shows about two switches per request); **which calls** is `strace -c -f` attached to each "+
		"group during the third (ptrace slows the server several fold, so counts that depend on "+
		"load, such as epoll waits and futex wake-ups, read high there: the perf column is the "+
		"total to believe). Calls under 0.05 per request are left out. herd's master does all "+
		"the HTTP, its workers only the app behind the uwsgi link; Granian's main process only "+
		"supervises, its workers run the Rust HTTP server and the app in one process. The app "+
		"row is the floor: bench/inproc.py's CPU per call of the same app in one process, no "+
		"server at all.\n\n", p.conns[0], p.where)
	b.WriteString("| app | server | processes | req/s | CPU us/req (user + sys) | system calls/req (perf) | context switches/req (perf) | which calls, per request (strace -c -f) |\n")
	b.WriteString("|---|---|---|---:|---:|---:|---:|---|\n")
	for _, r := range res.where {
		label := r.server
		if i := slices.IndexFunc(allServers, func(s server) bool { return s.key == r.server }); i >= 0 {
			label = allServers[i].label
		}
		if r.na != "" {
			fmt.Fprintf(b, "| %s | %s | %s | | | | | |\n", r.app, label, r.na)
			continue
		}
		var all whereSide
		for _, s := range r.sides {
			all.user, all.sys = all.user+s.user, all.sys+s.sys
			all.syscalls, all.switches = all.syscalls+s.syscalls, all.switches+s.switches
			fmt.Fprintf(b, "| %s | %s | %s | %.0f | %s | %s | %s | %s |\n", r.app, label, s.name, r.rps,
				cpuCell(s), perCall(s.syscalls), perCall(s.switches), topCalls(s))
		}
		if r.sides[0].syscalls < 0 {
			all.syscalls, all.switches = -1, -1
		}
		fmt.Fprintf(b, "| %s | %s | **all** | %.0f | **%s** | **%s** | **%s** | |\n", r.app, label, r.rps,
			cpuCell(all), perCall(all.syscalls), perCall(all.switches))
		if in, ok := res.inproc[r.app]; ok && r.server == whereServers[len(whereServers)-1] {
			fmt.Fprintf(b, "| %s | the app in-process (floor) | one process | | %.1f | 0 | 0 | |\n", r.app, in.UsPerCall)
		}
	}
}

func cpuCell(s whereSide) string {
	return fmt.Sprintf("%.1f (%.1f + %.1f)", us(s.user+s.sys), us(s.user), us(s.sys))
}

func perCall(n float64) string {
	if n < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f", n)
}

// topCalls is strace's calls per request, largest first, with the total.
func topCalls(s whereSide) string {
	if s.traced < 0 {
		return "n/a"
	}
	parts := []string{fmt.Sprintf("%.1f in all:", s.traced)}
	for i, c := range s.top {
		if i == 6 {
			parts = append(parts, "...")
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.2f", c.name, c.perReq))
	}
	return strings.Join(parts, " ")
}
