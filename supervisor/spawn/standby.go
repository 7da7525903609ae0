package spawn

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// Standby keeps one worker interpreter started ahead of need (development mode):
// Python is up, worker.py is loaded, and it waits on a socket of its own (worker.py's
// --standby-fd). Spawn hands it the worker's sockets and id; it imports the app only then,
// from the code on disk at that moment. A reload thus pays for importing the app, not for
// starting Python, which is most of the time from a save to the new response.
//
// A new standby is started when the master calls Refill, after a worker is ready or gone:
// not while a generation boots, whose CPU it would take. Without a
// standby, Spawn starts a worker as Exec does. Close kills the standby; call it once the
// supervisor's Run has returned.
type Standby struct {
	Exec *Exec
	Log  zerolog.Logger

	mu       sync.Mutex
	standby  *standby // started and not handed over yet; nil when none
	starting bool     // a goroutine is starting one
	closed   bool
	// wg counts the goroutines that start standbys and that wait for their processes (a
	// process handed over keeps its waiter until it exits).
	wg sync.WaitGroup
}

// standby is an interpreter waiting for its hand-over.
type standby struct {
	proc           *standbyProcess
	conn           *net.UnixConn // the master's end of the --standby-fd socket
	stdout, stderr *switchWriter
}

// Debug log messages, for tests to follow the standbys.
const (
	MsgStandbyStarted = "standby interpreter started"
	MsgHandedOver     = "worker handed to the standby interpreter"
)

// handOverTimeout bounds the hand-over's one write: it only fails to finish at once if the
// standby is wedged.
const handOverTimeout = time.Second

// Spawn implements Spawner.
func (s *Standby) Spawn(spec Spec) (Process, error) {
	s.mu.Lock()
	sb := s.standby
	s.standby = nil
	s.mu.Unlock()
	if sb != nil {
		err := sb.handOver(spec)
		if err == nil {
			s.Log.Debug().Int("worker", spec.ID).Int("pid", sb.proc.Pid()).Msg(MsgHandedOver)
			return sb.proc, nil
		}
		s.Log.Warn().Err(err).Int("pid", sb.proc.Pid()).Msg("standby interpreter unusable: starting the worker afresh")
		s.letGo(sb)
	}
	return s.Exec.Spawn(spec)
}

// Refill starts a standby interpreter in the background unless there is one, or one is
// starting. Call it when a boot is over (the CPU is free for the next standby) and when a
// worker failed to boot or crashed (the next reload or restart wants one); not when a worker
// was stopped or replaced on purpose: at shutdown a new standby would only delay the exit.
// It never waits for a fork and exec, so the supervisor's loop may call it.
func (s *Standby) Refill() { s.refill() }

// Close kills the standby and waits for every process it started to be reaped.
func (s *Standby) Close() {
	s.mu.Lock()
	s.closed = true
	sb := s.standby
	s.standby = nil
	s.mu.Unlock()
	if sb != nil {
		s.letGo(sb)
	}
	s.wg.Wait()
}

// refill starts a standby in the background unless there is one, or one is starting. It
// is called from the supervisor's loop, which must not wait for a fork and exec.
func (s *Standby) refill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.standby != nil || s.starting {
		return
	}
	s.starting = true
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		sb, err := s.start()
		s.mu.Lock()
		s.starting = false
		closed := s.closed
		if err == nil && !closed {
			s.standby = sb
		}
		s.mu.Unlock()
		switch {
		case err != nil:
			s.Log.Warn().Err(err).Msg("could not start a standby interpreter: the next worker starts afresh")
		case closed:
			s.letGo(sb)
		}
	}()
}

// start starts an interpreter in standby and the goroutine that reaps it.
func (s *Standby) start() (*standby, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("standby socketpair: %w", err)
	}
	masterFile := os.NewFile(uintptr(fds[0]), "standby-master")
	child := os.NewFile(uintptr(fds[1]), "standby-worker")
	defer child.Close()
	conn, err := net.FileConn(masterFile)
	_ = masterFile.Close()
	if err != nil {
		return nil, fmt.Errorf("standby socketpair: %w", err)
	}
	log := s.Log.With().Str("component", "worker").Bool("standby", true).Logger()
	sb := &standby{
		conn:   conn.(*net.UnixConn),
		stdout: &switchWriter{w: NewLineLogger(log, "stdout")},
		stderr: &switchWriter{w: NewLineLogger(log, "stderr")},
	}
	cmd := s.Exec.command([]string{"--standby-fd", "3"}, []*os.File{child})
	p, err := startProcess(cmd, sb.stdout, sb.stderr)
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("start standby %s: %w", s.Exec.Python, err)
	}
	sb.proc = &standbyProcess{execProcess: p, done: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		sb.proc.status = sb.proc.execProcess.Wait()
		close(sb.proc.done)
		s.forget(sb)
	}()
	s.Log.Debug().Int("pid", sb.proc.Pid()).Msg(MsgStandbyStarted)
	return sb, nil
}

// forget drops a standby that exited before it was handed over.
func (s *Standby) forget(sb *standby) {
	s.mu.Lock()
	lost := s.standby == sb
	if lost {
		s.standby = nil
	}
	s.mu.Unlock()
	if lost {
		_ = sb.conn.Close()
		s.Log.Warn().Int("pid", sb.proc.Pid()).Str("exit", sb.proc.status.String()).
			Msg("standby interpreter exited before it was needed: the next worker starts afresh")
	}
}

// letGo ends a standby that will not be handed over. It holds no app and no request, so
// SIGKILL loses nothing, and does not wait for an interpreter still starting to read the
// EOF of its socket. Its reaper goroutine reaps it.
func (s *Standby) letGo(sb *standby) {
	_ = sb.conn.Close()
	_ = sb.proc.Signal(syscall.SIGKILL)
}

// handOver sends the standby its worker id and its two sockets (worker.py's hand-over
// message). From then on its output is the worker's.
func (sb *standby) handOver(spec Spec) error {
	msg, err := json.Marshal(struct {
		Argv []string `json:"argv"`
	}{[]string{"--worker-id", strconv.Itoa(spec.ID)}})
	if err != nil {
		return fmt.Errorf("standby hand-over: %w", err)
	}
	sb.stdout.set(spec.Stdout)
	sb.stderr.set(spec.Stderr)
	_ = sb.conn.SetWriteDeadline(time.Now().Add(handOverTimeout))
	rights := syscall.UnixRights(int(spec.Listen.Fd()), int(spec.Control.Fd()))
	n, oobn, err := sb.conn.WriteMsgUnix(append(msg, '\n'), rights, nil)
	_ = sb.conn.Close() // the standby reads the message, then EOF, which it ignores
	switch {
	case err != nil:
		return fmt.Errorf("standby hand-over: %w", err)
	case n != len(msg)+1 || oobn != len(rights):
		return errors.New("standby hand-over: short write")
	}
	return nil
}

// standbyProcess is a standby's process: its reaper goroutine, not the supervisor, waits
// for it, since it may die before the hand-over.
type standbyProcess struct {
	*execProcess
	done   chan struct{}
	status ExitStatus // set before done is closed
}

func (p *standbyProcess) Wait() ExitStatus {
	<-p.done
	return p.status
}

// switchWriter is an output stream whose destination changes at the hand-over: a standby's
// lines are logged as the standby's, then as the worker's.
type switchWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *switchWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *switchWriter) set(w io.Writer) {
	s.mu.Lock()
	s.w = w
	s.mu.Unlock()
}
