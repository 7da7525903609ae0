// Package daemon supervises the background processes a deployment runs beside its app: a
// Celery worker, a queue consumer (uWSGI's attach-daemon and smart-attach-daemon, herd's
// --attach-daemon and --smart-attach-daemon). The master owns a Set: the daemons start with
// it, are restarted with backoff when they exit, and are stopped (TERM, then KILL after a
// deadline) when it stops.
//
// One goroutine owns each daemon: it alone starts the process, calls Wait on it (every
// child is reaped) and decides what comes next; it ends when the Set's context ends and its
// process is gone. It knows nothing of HTTP or of the workers.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/herd-server/herd/internal/backoff"
	"github.com/herd-server/herd/supervisor/spawn"
)

// Spec is one daemon.
type Spec struct {
	Command string // run by /bin/sh -c
	// Pidfile, when set, makes a smart daemon: the command may put itself in the background
	// and write its pid there; herd then follows the process the file names.
	Pidfile string
}

// Status is one daemon as herd status shows it.
type Status struct {
	Command  string    `json:"command"`
	Pid      int       `json:"pid"` // 0 while it is not running
	State    string    `json:"state"`
	Restarts int       `json:"restarts"`
	Since    time.Time `json:"since"`
}

// Set supervises daemons.
type Set struct {
	Specs []Spec
	Dir   string   // working directory ("" the master's)
	Env   []string // environment (nil the master's)
	Log   zerolog.Logger
	// StopTimeout is how long a daemon may take to exit after TERM before it is killed.
	StopTimeout time.Duration

	mu     sync.Mutex
	status []Status
}

// Backoff between restarts: at once after a daemon that ran for stableAfter, else doubling
// from backoffStep up to backoffCap; followPoll is how often a smart daemon's pid is checked.
const (
	backoffStep = time.Second
	backoffCap  = time.Minute
	stableAfter = 10 * time.Second
	followPoll  = time.Second
	// smartOutputDelay is how long a smart daemon's output is still logged after its
	// command exited.
	smartOutputDelay = 500 * time.Millisecond
)

// Run starts every daemon and supervises them until ctx ends, then stops them and returns
// once every one is gone.
func (s *Set) Run(ctx context.Context) {
	s.mu.Lock()
	s.status = make([]Status, len(s.Specs))
	for i, sp := range s.Specs {
		s.status[i] = Status{Command: sp.Command, State: "starting", Since: time.Now()}
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for i := range s.Specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.own(ctx, i)
		}()
	}
	wg.Wait()
}

// Status is a snapshot of every daemon.
func (s *Set) Status() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Status(nil), s.status...)
}

func (s *Set) set(i int, f func(*Status)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.status[i])
}

// own is daemon i's owner: start, wait, restart with backoff, until ctx ends.
func (s *Set) own(ctx context.Context, i int) {
	sp := s.Specs[i]
	log := s.Log.With().Str("component", "daemon").Str("command", sp.Command).Logger()
	row := 0
	for {
		started := time.Now()
		err := s.runOnce(ctx, i, sp, log)
		if ctx.Err() != nil {
			s.set(i, func(st *Status) { st.State, st.Pid, st.Since = "stopped", 0, time.Now() })
			return
		}
		if time.Since(started) >= stableAfter {
			row = 0
		}
		row++
		delay := restarts.Delay(row)
		log.Warn().Err(err).Int("exits_in_a_row", row).Dur("restart_in_ms", delay).Msg("daemon exited: restarting it")
		s.set(i, func(st *Status) { st.State, st.Pid, st.Since = "backoff", 0, time.Now(); st.Restarts++ })
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			s.set(i, func(st *Status) { st.State, st.Since = "stopped", time.Now() })
			return
		}
	}
}

var restarts = backoff.Policy{Step: backoffStep, Cap: backoffCap}

// runOnce runs the command until it exits (following a smart daemon's pidfile after that),
// or until ctx ends, when it stops it. It returns why the daemon ended.
func (s *Set) runOnce(ctx context.Context, i int, sp Spec, log zerolog.Logger) error {
	cmd := exec.Command("/bin/sh", "-c", sp.Command)
	cmd.Dir, cmd.Env = s.Dir, s.Env
	cmd.Stdout = spawn.NewLineLogger(log, "stdout")
	cmd.Stderr = spawn.NewLineLogger(log, "stderr")
	// Its own process group: stopping it reaches the shell's children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if sp.Pidfile != "" {
		_ = os.Remove(sp.Pidfile) // a stale pid must not be taken for the new process
		// The command exits once it has put the daemon in the background, which keeps its
		// output pipes: Wait must not wait for those. What the daemon writes after that
		// is its own business (daemons log to their own files).
		cmd.WaitDelay = smartOutputDelay
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	pid := cmd.Process.Pid
	log.Info().Int("pid", pid).Msg("daemon started")
	s.set(i, func(st *Status) { st.State, st.Pid, st.Since = "running", pid, time.Now() })
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // the one Wait; runOnce always receives it
	select {
	case err := <-exited:
		if errors.Is(err, exec.ErrWaitDelay) {
			err = nil // exited; the daemon it left holds the pipes
		}
		if sp.Pidfile == "" || err != nil {
			return exitError(err)
		}
		return s.follow(ctx, i, sp, log)
	case <-ctx.Done():
		stopGroup(pid, exited, s.StopTimeout, log)
		if sp.Pidfile != "" {
			if p, ok := pidFrom(sp.Pidfile); ok {
				stopPid(p, s.StopTimeout)
			}
		}
		return ctx.Err()
	}
}

func exitError(err error) error {
	if err == nil {
		return errors.New("exit 0")
	}
	return err
}

// follow watches the process a smart daemon's pidfile names, until it is gone or ctx ends
// (then it is stopped).
func (s *Set) follow(ctx context.Context, i int, sp Spec, log zerolog.Logger) error {
	pid, ok := pidFrom(sp.Pidfile)
	if !ok || !alive(pid) {
		return fmt.Errorf("exited, and %s names no live process", sp.Pidfile)
	}
	log.Info().Int("pid", pid).Str("pidfile", sp.Pidfile).Msg("daemon went to the background: following its pidfile")
	s.set(i, func(st *Status) { st.Pid = pid })
	t := time.NewTicker(followPoll)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if !alive(pid) {
				return fmt.Errorf("process %d of %s is gone", pid, sp.Pidfile)
			}
		case <-ctx.Done():
			stopPid(pid, s.StopTimeout)
			return ctx.Err()
		}
	}
}

// stopGroup sends TERM to the daemon's process group and KILL after timeout, and waits
// for the exit (the owner's Wait).
func stopGroup(pid int, exited <-chan error, timeout time.Duration, log zerolog.Logger) {
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-exited:
	case <-t.C:
		log.Warn().Int("pid", pid).Dur("stop_timeout_ms", timeout).Msg("daemon did not stop in time: killing it")
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-exited
	}
	// What is left of its group (a child that ignored TERM) goes with it.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}

// stopPid stops a process that is not herd's child (a smart daemon in the background):
// TERM, then KILL once timeout passed; it polls, as only its parent could wait for it.
func stopPid(pid int, timeout time.Duration) {
	if !alive(pid) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for range t.C {
		if !alive(pid) {
			return
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			return
		}
	}
}

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	if err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	// A zombie (exited, not yet reaped by its parent) is no daemon.
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	if j := strings.LastIndexByte(string(stat), ')'); j > 0 && j+2 < len(stat) {
		return stat[j+2] != 'Z'
	}
	return true
}

func pidFrom(pidfile string) (int, bool) {
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid, err == nil && pid > 0
}

// Specs reads --attach-daemon commands and --smart-attach-daemon "PIDFILE COMMAND" lines.
func Specs(attach, smart []string) []Spec {
	var out []Spec
	for _, c := range attach {
		out = append(out, Spec{Command: c})
	}
	for _, line := range smart {
		pidfile, c, _ := strings.Cut(strings.TrimSpace(line), " ")
		out = append(out, Spec{Command: strings.TrimSpace(c), Pidfile: pidfile})
	}
	return out
}
