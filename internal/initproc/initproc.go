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
		if status, done := reap(child); done {
			return status
		}
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
