package spawn

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
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

// Process is a started worker. The pool never assumes how it came to be (exec, or a fork
// server) nor that it is the master's direct child. Pid is 0 until a fork server that is
// still importing the app has forked it.
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
	Err    error          // Wait itself failed, or the status is not known (ErrStatusUnknown)
}

func (e ExitStatus) String() string {
	switch {
	case e.Err != nil:
		return e.Err.Error()
	case e.Signal != 0:
		// "killed by SIGABRT (aborted)": Go's name of a signal alone reads "killed by aborted".
		return "killed by " + unix.SignalName(e.Signal) + " (" + e.Signal.String() + ")"
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
		[]*os.File{spec.Listen, spec.Control})
	p, err := startProcess(cmd, spec.Stdout, spec.Stderr)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", s.Python, err)
	}
	return p, nil
}

// command is the worker's command line with extra arguments, files inherited from fd 3 on.
func (s *Exec) command(extra []string, files []*os.File) *exec.Cmd {
	args := append([]string{s.WorkerScript}, s.Args...)
	cmd := exec.Command(s.Python, append(args, extra...)...)
	if s.err != nil {
		cmd.Err = s.err // Start fails with it, as it does when there is no such Python
	}
	cmd.ExtraFiles = files
	cmd.Env = s.Env
	cmd.Dir = s.Dir
	// Its own process group: a Ctrl-C in the terminal reaches the master only, which then
	// stops the workers in order instead of having them die mid-request.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: s.Credential}
	return cmd
}

// outputDrain bounds how long, once a worker has exited, its output is still read: what it
// wrote before it died is in the pipe already, and a child it forked (an app's background
// process) may hold the pipe open for ever.
const outputDrain = 50 * time.Millisecond

// execProcess is a started worker: its exit is learnt from the kernel (os.Process.Wait,
// which waits on a pidfd), never from its output pipes closing, so a grandchild holding
// them does not hide the worker's death.
type execProcess struct {
	cmd *exec.Cmd
	// out are the read ends of the worker's stdout and stderr; copying is the goroutines
	// that log them, done when both have ended.
	out     []*os.File
	copying sync.WaitGroup
}

// startProcess starts cmd with its stdout and stderr going to the two writers through pipes
// of its own (exec's would make cmd.Wait wait for every holder of the pipes to close them).
func startProcess(cmd *exec.Cmd, stdout, stderr io.Writer) (*execProcess, error) {
	p := &execProcess{cmd: cmd}
	out, childEnds, err := outputPipes(&p.copying, stdout, stderr)
	if err != nil {
		return nil, err
	}
	p.out = out
	defer func() {
		for _, f := range childEnds {
			_ = f.Close() // the child has its copies
		}
	}()
	cmd.Stdout, cmd.Stderr = childEnds[0], childEnds[1]
	if err := cmd.Start(); err != nil {
		p.closeOutput()
		p.copying.Wait()
		return nil, err
	}
	return p, nil
}

// outputPipes makes a pipe for each writer and a goroutine (counted in copying) that
// copies what comes out of it there, until its end or until the read end is closed. It
// returns the read ends and the write ends to give the process.
func outputPipes(copying *sync.WaitGroup, dsts ...io.Writer) (readEnds, writeEnds []*os.File, err error) {
	for _, dst := range dsts {
		r, w, err := os.Pipe()
		if err != nil {
			for _, f := range append(readEnds, writeEnds...) {
				_ = f.Close()
			}
			copying.Wait()
			return nil, nil, fmt.Errorf("output pipe: %w", err)
		}
		readEnds, writeEnds = append(readEnds, r), append(writeEnds, w)
		if dst == nil {
			dst = io.Discard
		}
		copying.Add(1)
		go func() {
			defer copying.Done()
			_, _ = io.Copy(dst, r) // ends at EOF, or when r is closed
		}()
	}
	return readEnds, writeEnds, nil
}

func (p *execProcess) closeOutput() {
	for _, f := range p.out {
		_ = f.Close()
	}
}

func (p *execProcess) Pid() int { return p.cmd.Process.Pid }

func (p *execProcess) Signal(sig os.Signal) error {
	err := p.cmd.Process.Signal(sig)
	if errors.Is(err, os.ErrProcessDone) {
		return nil // killing twice is harmless
	}
	return err
}

// Wait reaps the process, then logs what is left of its output (at most outputDrain more)
// and closes its pipes.
func (p *execProcess) Wait() ExitStatus {
	state, err := p.cmd.Process.Wait()
	deadline := time.Now().Add(outputDrain)
	for _, f := range p.out {
		_ = f.SetReadDeadline(deadline)
	}
	p.copying.Wait()
	p.closeOutput()
	if state == nil {
		return ExitStatus{Code: -1, Err: fmt.Errorf("wait: %w", err)}
	}
	st, ok := state.Sys().(syscall.WaitStatus)
	if !ok {
		return ExitStatus{Code: state.ExitCode()}
	}
	if st.Signaled() {
		return ExitStatus{Code: -1, Signal: st.Signal()}
	}
	return ExitStatus{Code: st.ExitStatus()}
}
