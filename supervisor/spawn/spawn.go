package spawn

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// Spec is everything a spawner needs to start one worker. The listening socket and the
// worker's end of the control channel are handed over as inherited descriptors; the spawner
// must not keep them open after Spawn returns.
type Spec struct {
	ID         int
	Generation int
	Listen     *os.File // a listening AF_UNIX socket, becomes fd 3 in the worker
	Control    *os.File // the worker's end of the control socketpair, becomes fd 4
	Stdout     io.Writer
	Stderr     io.Writer
}

// Process is a started worker. The pool never assumes how it came to be (exec today, a
// preloading fork server later) nor that it is the master's direct child.
type Process interface {
	Pid() int
	Signal(sig os.Signal) error
	// Wait blocks until the process is gone. It is called exactly once, by the worker's
	// owner goroutine.
	Wait() ExitStatus
}

// Spawner starts worker processes.
type Spawner interface {
	Spawn(spec Spec) (Process, error)
}

// ExitStatus is how a worker ended.
type ExitStatus struct {
	Code   int            // exit code, -1 when killed by a signal
	Signal syscall.Signal // the signal that killed it, 0 otherwise
	Err    error          // Wait itself failed
}

func (e ExitStatus) String() string {
	switch {
	case e.Err != nil:
		return "wait: " + e.Err.Error()
	case e.Signal != 0:
		return "killed by " + e.Signal.String()
	default:
		return "exit " + strconv.Itoa(e.Code) + meaningOfExitCode(e.Code)
	}
}

// Worker exit codes: a contract with the worker (docs/protocol.md), as gunicorn has with its
// workers.
const (
	ExitClean     = 0 // the master closed the control channel or asked it to stop
	ExitBootError = 3 // the worker itself could not start (bad arguments, descriptors, Python)
	ExitAppImport = 4 // the app could not be imported
)

func meaningOfExitCode(code int) string {
	switch code {
	case ExitClean:
		return " (clean)"
	case ExitBootError:
		return " (worker boot error)"
	case ExitAppImport:
		return " (app import error)"
	}
	return ""
}

// Exec starts each worker as `Python WorkerScript args...` with exec, never a shell.
type Exec struct {
	Python       string   // interpreter path or name on PATH
	WorkerScript string   // the worker's start-up file (InstallWorker)
	Args         []string // worker arguments shared by every worker (--app, --threads ...)
	Env          []string // full environment; nil means the master's
	Dir          string   // working directory
	// Credential, when set, runs the worker as another user and group (WithCredential).
	Credential *syscall.Credential
	// err, when set, is why no worker can start (WithCredential could not share the
	// worker's code): every start fails with it.
	err error
}

// Spawn implements Spawner.
func (s *Exec) Spawn(spec Spec) (Process, error) {
	cmd := s.command([]string{"--listen-fd", "3", "--control-fd", "4", "--worker-id", strconv.Itoa(spec.ID)},
		[]*os.File{spec.Listen, spec.Control}, spec.Stdout, spec.Stderr)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.Python, err)
	}
	return &execProcess{cmd: cmd}, nil
}

// command is the worker's command line with extra arguments, files inherited from fd 3 on.
func (s *Exec) command(extra []string, files []*os.File, stdout, stderr io.Writer) *exec.Cmd {
	args := append([]string{s.WorkerScript}, s.Args...)
	cmd := exec.Command(s.Python, append(args, extra...)...)
	if s.err != nil {
		cmd.Err = s.err // Start fails with it, as it does when there is no such Python
	}
	cmd.ExtraFiles = files
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.Env = s.Env
	cmd.Dir = s.Dir
	// Its own process group: a Ctrl-C in the terminal reaches the master only, which then
	// stops the workers in order instead of having them die mid-request.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: s.Credential}
	// A grandchild that keeps the worker's stdout open must not block Wait forever.
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

type execProcess struct{ cmd *exec.Cmd }

func (p *execProcess) Pid() int { return p.cmd.Process.Pid }

func (p *execProcess) Signal(sig os.Signal) error {
	err := p.cmd.Process.Signal(sig)
	if errors.Is(err, os.ErrProcessDone) {
		return nil // killing twice is harmless
	}
	return err
}

func (p *execProcess) Wait() ExitStatus {
	err := p.cmd.Wait()
	// With WaitDelay, Wait may report ErrWaitDelay for a process that did exit: the
	// ProcessState, when there is one, is the truth.
	if p.cmd.ProcessState == nil {
		return ExitStatus{Code: -1, Err: err}
	}
	st, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok {
		return ExitStatus{Code: p.cmd.ProcessState.ExitCode()}
	}
	if st.Signaled() {
		return ExitStatus{Code: -1, Signal: st.Signal()}
	}
	return ExitStatus{Code: st.ExitStatus()}
}
