package main

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// What else ran: the machines here are shared, and a figure means little without the load
// beside it. The report gives the load average at both ends, and this: how busy the cores
// were over the run, how much of that was the benchmark's own processes (the harness, wrk
// and every server, all its descendants), and the busiest of the rest by command name.

// busyTicks is the machine's non-idle CPU time since boot, from /proc/stat's cpu line.
func busyTicks() uint64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var busy uint64
	// user nice system idle iowait irq softirq steal: idle (3) and iowait (4) are not work.
	for i := 1; i < len(f) && i <= 8; i++ {
		if i == 4 || i == 5 {
			continue
		}
		v, _ := strconv.ParseUint(f[i], 10, 64)
		busy += v
	}
	return busy
}

// othersSnapshot is the machine's CPU at one moment, by process.
type othersSnapshot struct {
	at    time.Time
	busy  uint64
	self  uint64 // this program's CPU and its reaped descendants'
	procs map[int]procStat
	names map[int]string
}

func takeOthersSnapshot() othersSnapshot {
	self, _ := readSelfChildren()
	s := othersSnapshot{at: time.Now(), busy: busyTicks(), self: self, procs: allProcs(), names: make(map[int]string)}
	for pid := range s.procs {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil {
			s.names[pid] = strings.TrimSpace(string(b))
		}
	}
	return s
}

// ours says whether pid is this program or one of its descendants in snapshot s.
func ours(s othersSnapshot, pid int) bool {
	self := os.Getpid()
	for seen := 0; pid > 1 && seen < 64; seen++ {
		if pid == self {
			return true
		}
		st, ok := s.procs[pid]
		if !ok {
			return false
		}
		pid = st.ppid
	}
	return false
}

// othersReport compares two snapshots: the share of the cores that was busy, the share that
// was the benchmark, and the busiest other commands. Processes that started and ended between
// the snapshots are in the busy share but not in the list.
func othersReport(from, to othersSnapshot) string {
	wall := to.at.Sub(from.at)
	if wall <= 0 || to.busy < from.busy {
		return ""
	}
	capacity := wall.Seconds() * clockTicks * float64(runtime.NumCPU())
	// The benchmark's own: this program and the descendants it reaped (servers, wrk, each
	// with the workers it reaped), plus any descendant still alive.
	mine := to.self - min(to.self, from.self)
	byName := make(map[string]uint64)
	for pid, st := range to.procs {
		used := st.cpuTicks
		if old, ok := from.procs[pid]; ok && old.startTime == st.startTime {
			used -= min(used, old.cpuTicks)
		}
		switch {
		case pid == os.Getpid():
		case ours(to, pid):
			mine += used
		case used > 0:
			byName[to.names[pid]] += used
		}
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int { return int(byName[b]) - int(byName[a]) })
	var top []string
	for _, n := range names[:min(len(names), 6)] {
		top = append(top, fmt.Sprintf("%s %.1f s", n, float64(byName[n])/clockTicks))
	}
	busy := float64(to.busy - from.busy)
	return fmt.Sprintf("over the run's %v the %d cores were %.0f%% busy: the benchmark (harness, wrk, "+
		"servers) %.0f%%, everything else %.0f%%; the busiest other commands by CPU time: %s",
		wall.Round(time.Second), runtime.NumCPU(), 100*busy/capacity, 100*float64(mine)/capacity,
		100*max(busy-float64(mine), 0)/capacity, strings.Join(top, ", "))
}

// readSelfChildren is this program's own CPU plus that of its reaped children, in ticks.
func readSelfChildren() (uint64, bool) {
	f, ok := statFields("/proc/self/stat")
	if !ok {
		return 0, false
	}
	var sum uint64
	for _, k := range []int{11, 12, 13, 14} { // utime stime cutime cstime
		v, _ := strconv.ParseUint(f[k], 10, 64)
		sum += v
	}
	return sum, true
}
