package spawn

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrStatusUnknown is the exit of a forked process whose fork server died before it could
// report it: the process is gone, how it ended is not known.
var ErrStatusUnknown = errors.New("exit status unknown: its fork server is gone")

// Timings of a forked process's end.
const (
	// exitReportWait bounds how long, once a pidfd said the process is gone, its fork
	// server's report of the exit status is awaited: it reaps at once on SIGCHLD.
	exitReportWait = 250 * time.Millisecond
	// procPollEvery is how often the liveness of a process with neither a pidfd nor a fork
	// server to report its exit is read from /proc (Linux before 5.3, its fork server dead).
	procPollEvery = 100 * time.Millisecond
	// forkAnswerTimeout: a process killed while its fork was asked for and not yet
	// answered; a fork server that does not answer within it is wedged and is killed.
	forkAnswerTimeout = time.Second
)

// forkPhase is where a forked process is in its coming to be.
type forkPhase int

const (
	forkPending forkPhase = iota // waiting for its fork server to be ready
	forkAsked                    // its fork request was sent, not yet answered
	forkRunning                  // forked: pid known
	forkOver                     // reaped, or given up before it was forked
)

// forkedProcess is a process a fork server forks: a worker, or (development mode) an app's
// fork server forked from the template. The master is not its parent and cannot wait for
// it: it learns its death from a pidfd the fork server sent (or, without one, from the fork
// server's report or /proc), and its exit status from the fork server's report.
//
// Every field below mu is guarded by the ForkServer's lock.
type forkedProcess struct {
	what string // "worker 3", "fork server 2": errors and logs name it
	id   int    // its fork request's id
	gen  int
	mu   *sync.Mutex // the ForkServer's
	// handover are the descriptors its fork request carries (a worker's listening socket,
	// control end, stdout and stderr; a fork server's channel, stdout and stderr). The
	// master keeps them until the fork is answered: a stale fork server's request is
	// asked again of another.
	handover []*os.File
	control  *os.File // a worker's control end (handover[1]): a boot error is written there
	out      []*os.File
	copying  sync.WaitGroup
	// The request: cmd (fork, or fork_server to a template), argv, and whether the fork
	// server is to check first that the code it imported did not change (development).
	cmd   string
	argv  []string
	fresh bool
	// serves is the fork server this process is (development: forked from the template),
	// nil for a worker.
	serves *forkServer

	phase    forkPhase
	srv      *forkServer // whom it was asked of
	pid      int
	pidfd    int // -1: none
	start    uint64
	killSig  syscall.Signal
	killWait *time.Timer
	status   ExitStatus
	reported bool
	forked   chan struct{} // closed when it runs, or was given up
	exited   chan struct{} // closed when its exit was reported, or nobody will report it
	finished bool
}

// newForkedProcess makes a process to fork, with the descriptors it is to be handed
// (duplicated: the caller keeps its own) and pipes for its output.
func newForkedProcess(what string, id, gen int, mu *sync.Mutex, give []*os.File, stdout, stderr io.Writer) (*forkedProcess, error) {
	p := &forkedProcess{what: what, id: id, gen: gen, mu: mu, pidfd: -1,
		forked: make(chan struct{}), exited: make(chan struct{})}
	for _, f := range give {
		d, err := dupFile(f)
		if err != nil {
			p.closeAll()
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		p.handover = append(p.handover, d)
	}
	if len(give) == 2 {
		p.control = p.handover[1]
	}
	out, writeEnds, err := outputPipes(&p.copying, stdout, stderr)
	if err != nil {
		p.closeAll()
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	p.out, p.handover = out, append(p.handover, writeEnds...)
	return p, nil
}

// dupFile duplicates a descriptor, close-on-exec, as a file of its own.
func dupFile(f *os.File) (*os.File, error) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dup %s: %w", f.Name(), err)
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

func (p *forkedProcess) closeHandover() {
	for _, f := range p.handover {
		_ = f.Close()
	}
	p.handover, p.control = nil, nil
}

func (p *forkedProcess) closeAll() {
	p.closeHandover()
	for _, f := range p.out {
		_ = f.Close()
	}
}

// Pid is 0 until the process is forked.
func (p *forkedProcess) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

// Signal delivers sig: at once when it runs; once forked when its fork was asked for (a
// fork server that does not answer within forkAnswerTimeout is killed); and a process not
// asked for yet is given up, as if killed by sig.
func (p *forkedProcess) Signal(sig os.Signal) error {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return fmt.Errorf("%s: signal %v is not a syscall.Signal", p.what, sig)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.killLocked(s)
}

func (p *forkedProcess) killLocked(s syscall.Signal) error {
	switch p.phase {
	case forkPending:
		p.srv.dropQueuedLocked(p)
		p.giveUpLocked(ExitStatus{Code: -1, Signal: s}, "")
	case forkAsked:
		p.killSig = s
		if p.killWait == nil {
			srv := p.srv
			p.killWait = time.AfterFunc(forkAnswerTimeout, func() { srv.wedged(p) })
		}
	case forkRunning:
		return p.signalLocked(s)
	}
	return nil
}

func (p *forkedProcess) signalLocked(s syscall.Signal) error {
	var err error
	switch {
	case p.pidfd >= 0:
		err = unix.PidfdSendSignal(p.pidfd, s, nil, 0)
	case !p.reported && !p.finished:
		err = syscall.Kill(p.pid, s)
	}
	if errors.Is(err, syscall.ESRCH) {
		return nil // killing twice is harmless
	}
	return err
}

// runningLocked records the fork server's answer: the process runs.
func (p *forkedProcess) runningLocked(srv *forkServer, pid, pidfd int, start uint64) {
	p.srv, p.pid, p.pidfd, p.start = srv, pid, pidfd, start
	p.phase = forkRunning
	p.closeHandover() // its own copies are in the child now
	if p.killWait != nil {
		p.killWait.Stop()
	}
	close(p.forked)
	if p.killSig != 0 {
		_ = p.signalLocked(p.killSig)
	}
}

// giveUpLocked ends a process that will not be forked, with st as its exit. bootError,
// when set, is a control-channel line written on a worker's control end first, as the
// worker would have written it.
func (p *forkedProcess) giveUpLocked(st ExitStatus, bootError string) {
	if p.phase == forkRunning || p.phase == forkOver {
		return
	}
	if p.killWait != nil {
		p.killWait.Stop()
	}
	if bootError != "" && p.control != nil {
		_ = p.control.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = p.control.WriteString(bootError)
	}
	p.phase = forkOver
	p.status = st
	p.closeAll()
	close(p.forked)
	close(p.exited)
}

// exitedLocked records the fork server's report of the exit.
func (p *forkedProcess) exitedLocked(st ExitStatus) {
	if p.reported {
		return
	}
	p.reported = true
	p.status = st
	close(p.exited)
}

// orphanedLocked: its fork server is gone, nobody will report its exit.
func (p *forkedProcess) orphanedLocked() {
	if !p.reported {
		p.reported = true
		p.status = ExitStatus{Code: -1, Err: ErrStatusUnknown}
		close(p.exited)
	}
}

// Wait blocks until the process is gone, and returns how it ended.
func (p *forkedProcess) Wait() ExitStatus {
	<-p.forked
	p.mu.Lock()
	over, pidfd := p.phase == forkOver, p.pidfd
	p.mu.Unlock()
	if over {
		p.copying.Wait()
		return p.status
	}
	if pidfd >= 0 {
		waitPidfd(pidfd)
		select {
		case <-p.exited:
		case <-time.After(exitReportWait):
		}
	} else {
		p.waitWithoutPidfd()
	}
	// Its output: what it wrote before it died is in the pipes; a child it forked may hold
	// them for ever.
	deadline := time.Now().Add(outputDrain)
	for _, f := range p.out {
		_ = f.SetReadDeadline(deadline)
	}
	p.copying.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeAll()
	if p.pidfd >= 0 {
		_ = unix.Close(p.pidfd)
		p.pidfd = -1
	}
	p.finished = true
	p.phase = forkOver
	if !p.reported {
		return ExitStatus{Code: -1, Err: ErrStatusUnknown}
	}
	return p.status
}

// waitWithoutPidfd waits for the fork server's report; once nobody is left to report,
// for /proc to show the process gone (its pid and start time name it: a reused pid has
// another start time).
func (p *forkedProcess) waitWithoutPidfd() {
	<-p.exited
	p.mu.Lock()
	unknown := errors.Is(p.status.Err, ErrStatusUnknown)
	p.mu.Unlock()
	for unknown && p.start != 0 && processStart(p.pid) == p.start {
		time.Sleep(procPollEvery)
	}
}

// waitPidfd blocks until the pidfd is readable: the process has exited.
func waitPidfd(fd int) {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, -1)
		if err == nil && n > 0 || err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

// processStart is a process's start time in clock ticks after boot (field 22 of
// /proc/PID/stat), 0 when there is no such process (or it is a zombie).
func processStart(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	fields := bytes.Fields(b[i+1:])
	if len(fields) < 20 || string(fields[0]) == "Z" {
		return 0
	}
	n, _ := strconv.ParseUint(string(fields[19]), 10, 64)
	return n
}
