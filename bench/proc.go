package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/PID/stat: 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// procStat is what the benchmark reads of one process in /proc.
type procStat struct {
	pid, ppid int
	startTime uint64 // in clock ticks since boot: with pid, names the process uniquely
	cpuTicks  uint64 // utime + stime
	sysTicks  uint64 // stime alone: time in the kernel, mostly system calls
	rssBytes  int64
}

// statFields is a /proc/.../stat file's fields after the command name, counted from 0:
// state, ppid, ... utime is 11, stime 12, cutime 13, cstime 14, starttime 19, rss (pages) 21.
func statFields(path string) ([]string, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, false
	}
	f := strings.Fields(s[i+1:])
	return f, len(f) >= 22
}

// readStat reads /proc/PID/stat; zombies and vanished processes are not found.
func readStat(pid int) (procStat, bool) {
	f, ok := statFields(fmt.Sprintf("/proc/%d/stat", pid))
	if !ok || f[0] == "Z" {
		return procStat{}, false
	}
	num := func(k int) uint64 { v, _ := strconv.ParseUint(f[k], 10, 64); return v }
	return procStat{
		pid:       pid,
		ppid:      int(num(1)),
		startTime: num(19),
		cpuTicks:  num(11) + num(12),
		sysTicks:  num(12),
		rssBytes:  int64(num(21)) * int64(os.Getpagesize()),
	}, true
}

// allProcs reads every live process once.
func allProcs() map[int]procStat {
	out := make(map[int]procStat)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readStat(pid); ok {
			out[pid] = st
		}
	}
	return out
}

// treeSample is the sum over the process trees of a server's root processes.
type treeSample struct {
	procs    []procStat
	cpuTicks uint64
	rssBytes int64
	rootRSS  int64 // the roots alone: herd's master, uWSGI's master, nginx's master ...
}

// sampleTrees sums CPU time and RSS over the given roots and all their descendants.
func sampleTrees(roots []int) treeSample {
	all := allProcs()
	children := make(map[int][]int)
	for pid, st := range all {
		children[st.ppid] = append(children[st.ppid], pid)
	}
	var s treeSample
	var walk func(pid int)
	walk = func(pid int) {
		st, ok := all[pid]
		if !ok {
			return
		}
		s.procs = append(s.procs, st)
		s.cpuTicks += st.cpuTicks
		s.rssBytes += st.rssBytes
		for _, c := range children[pid] {
			walk(c)
		}
	}
	for _, r := range roots {
		if st, ok := all[r]; ok {
			s.rootRSS += st.rssBytes
		}
		walk(r)
	}
	return s
}

// proc is one process the benchmark started, with every descendant it was seen with, so
// that stopping it leaves nothing behind even when the root dies first.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once the root is reaped
	err  error         // the root's exit status, once done is closed

	mu   sync.Mutex
	seen map[int]uint64 // pid -> start time of each descendant seen
}

// registry holds every process the benchmark has running; stopAll is the trap.
type registry struct {
	mu      sync.Mutex
	procs   map[*proc]bool
	stopped bool
}

var running = &registry{procs: make(map[*proc]bool)}

var errStopping = errors.New("the benchmark is stopping")

// start runs cmd in its own process group (so a Ctrl-C at the terminal reaches the
// benchmark, which stops it in order, and not the server directly), killed by the kernel if
// the benchmark itself dies.
func (r *registry) start(name string, cmd *exec.Cmd) (*proc, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return nil, errStopping
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), seen: make(map[int]uint64)}
	r.procs[p] = true
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// observe records the process tree under p as it is now.
func (p *proc) observe() treeSample {
	s := sampleTrees([]int{p.cmd.Process.Pid})
	p.mu.Lock()
	for _, st := range s.procs {
		if st.pid != p.cmd.Process.Pid {
			p.seen[st.pid] = st.startTime
		}
	}
	p.mu.Unlock()
	return s
}

// exited reports whether the root has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig to the root, waits up to grace for it, then kills by PID the root and
// every descendant ever seen under it that is still the same process.
func (r *registry) stop(p *proc, sig syscall.Signal, grace time.Duration) {
	p.observe()
	if !p.exited() {
		_ = p.cmd.Process.Signal(sig)
	}
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.mu.Lock()
	for pid, start := range p.seen {
		if st, ok := readStat(pid); ok && st.startTime == start {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	p.mu.Unlock()
	r.mu.Lock()
	delete(r.procs, p)
	r.mu.Unlock()
}

// stopAll stops every process still running and refuses new ones: the trap for Ctrl-C,
// SIGTERM and errors.
func (r *registry) stopAll() {
	r.mu.Lock()
	r.stopped = true
	procs := make([]*proc, 0, len(r.procs))
	for p := range r.procs {
		procs = append(procs, p)
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.stop(p, syscall.SIGTERM, 3*time.Second)
		}()
	}
	wg.Wait()
}
