// Package initproc lets herd be the first process of a container (PID 1), as tini or
// dumb-init would otherwise be in front of it. PID 1 has two duties no other process has:
// the kernel gives it every orphan, whose exit it must reap or the zombies pile up; and it
// gets no default signal handling, so a TERM it does not catch does nothing.
//
// herd meets them by splitting in two: the PID 1 process only starts herd again as its
// child, forwards every signal to it, reaps whatever exits, and ends with the child's exit
// status. It starts nothing else and never uses os/exec, so its wait-for-any loop cannot
// steal an exit status from anyone: the master's own workers stay the master's to wait for.
package initproc

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/herd-server/herd/internal/listener"
)

// forwarded are the signals herd's master acts on (see DESIGN.md's signal table), plus the
// job-control and window ones a terminal sends.
var forwarded = []os.Signal{
	syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGUSR1,
	syscall.SIGUSR2, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGWINCH, syscall.SIGCONT,
}

// IsPID1 reports whether this process is the first of its PID namespace.
func IsPID1() bool { return os.Getpid() == 1 }

// Run starts this same program with the same arguments as a child, forwards signals to it
// and reaps every process that exits, until the child has. It returns the exit status to end
// with: the child's, or 128+signal when a signal killed it (as a shell reports it).
func Run() int {
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs, append([]os.Signal{syscall.SIGCHLD}, forwarded...)...)
	defer signal.Stop(sigs)

	child, err := startChild()
	if err != nil {
		fmt.Fprintf(os.Stderr, "herd (pid 1): %v\n", err)
		return 1
	}
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			// ESRCH only when the child is already gone: its SIGCHLD follows.
			_ = syscall.Kill(child, sig.(syscall.Signal))
			continue
		}
		status, done := reap(child)
		if !done {
			continue
		}
		if next := successor(); next != 0 {
			// The master re-executed itself (USR2) and retired: the new one, orphaned to
			// us, is the one to serve signals to and to wait for now.
			child = next
			continue
		}
		return status
	}
	return 1 // unreachable: sigs is never closed
}

// startChild runs this program again with the same arguments, environment and standard
// descriptors, and the sockets socket activation passed to PID 1.
func startChild() (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("find own executable: %w", err)
	}
	files := []uintptr{0, 1, 2}
	if os.Getenv("LISTEN_PID") == strconv.Itoa(os.Getpid()) {
		n, _ := strconv.Atoi(os.Getenv("LISTEN_FDS"))
		for fd := 3; fd < 3+n; fd++ {
			files = append(files, uintptr(fd))
		}
	}
	pid, err := syscall.ForkExec(exe, os.Args, &syscall.ProcAttr{
		// The child may take the sockets passed to PID 1: LISTEN_PID names its parent.
		Env:   append(os.Environ(), listener.EnvFromParent+"=1"),
		Files: files,
	})
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", exe, err)
	}
	return pid, nil
}

// successor finds the master that a USR2 upgrade started, once the old master has exited:
// a child of ours (orphans are re-parented to PID 1) run with our own arguments, as the
// upgrade runs the new binary. 0 when there is none.
func successor() int {
	want := strings.Join(os.Args[1:], "\x00")
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || parentOf(pid) != os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
		if len(args) > 0 && strings.Join(args[1:], "\x00") == want {
			return pid
		}
	}
	return 0
}

// parentOf reads a live process's parent pid from /proc (0 when gone or a zombie).
func parentOf(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	var state string
	var ppid int
	if _, err := fmt.Sscanf(s[i+1:], " %s %d", &state, &ppid); err != nil || state == "Z" {
		return 0
	}
	return ppid
}

// reap waits for every process that has exited, without blocking. done is true once the
// child is among them, with the status to exit with.
func reap(child int) (status int, done bool) {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return status, done
		}
		if pid != child {
			continue // an orphan the kernel handed us: reaping it is all there is to do
		}
		done = true
		status = ws.ExitStatus()
		if ws.Signaled() {
			status = 128 + int(ws.Signal())
		}
	}
}
