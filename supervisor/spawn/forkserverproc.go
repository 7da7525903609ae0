package spawn

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// A fork server process as the master sees it: its channel, what it was asked to fork and
// what it forked. The protocol: docs/protocol.md, "fork server".

// ControlMessage is a line a worker writes on its control channel (docs/protocol.md): ready,
// or a boot error with its traceback. A fork server's lines have the same fields, and more.
type ControlMessage struct {
	Event     string `json:"event"`
	Pid       int    `json:"pid"`
	Python    string `json:"python"`
	Kind      string `json:"kind"`
	Error     string `json:"error"`
	Traceback string `json:"traceback"`
	Link      string `json:"link"`  // "framed" for a multiplexed worker
	Slots     int    `json:"slots"` // its requests at once
}

// serverMessage is a line a fork server writes on its channel: a worker's fields (its own
// boot error) and what it forked and reaped.
type serverMessage struct {
	ControlMessage
	ID      int      `json:"id"`
	Pidfd   bool     `json:"pidfd"`
	Start   uint64   `json:"start"`
	Code    int      `json:"code"`
	Signal  int      `json:"signal"`
	Changed string   `json:"changed"`
	Modules []string `json:"modules"`
}

// forkCommand is a request the master writes: fork a worker or (to a template) a fork
// server, with its descriptors attached.
type forkCommand struct {
	Cmd     string   `json:"cmd"`
	ID      int      `json:"id,omitempty"`
	Argv    []string `json:"argv,omitempty"`
	Fresh   bool     `json:"fresh,omitempty"`
	Modules []string `json:"modules,omitempty"`
}

// forkWriteTimeout bounds a command's write: it only fails to finish at once if the fork
// server is wedged.
const forkWriteTimeout = time.Second

// maxServerLine bounds one line of a fork server (a development app server's list of
// modules is the longest: tens of KiB).
const maxServerLine = 4 << 20

type serverState int

const (
	serverStarting serverState = iota // importing
	serverReady
	serverGone // exited and reaped
)

// forkServer is one fork server process: an app's, that imported generation gen's code,
// or (development mode) the template.
type forkServer struct {
	owner      *ForkServer
	seq        int // 1, 2 ... in start order
	gen        int
	template   bool
	proc       Process
	conn       *net.UnixConn
	log        zerolog.Logger
	startedAt  time.Time
	readerDone chan struct{}
	fds        []int // descriptors received and not claimed yet: the reader's own

	// Guarded by owner.mu.
	pid      int
	state    serverState
	readyAt  time.Time
	python   string
	retired  bool // a newer one took over: it ends once it has no child left
	closing  bool // the master let it go
	stale    bool // development: the code it imported changed
	queue    []*forkedProcess
	asked    map[int]*forkedProcess // by request id: sent, not answered yet
	children map[int]*forkedProcess // by pid: forked, exit not reported yet
	bootLine string                 // its boot_error, as the line its workers would have written
	forks    uint64
}

// usableLocked says whether new forks may be asked of it.
func (srv *forkServer) usableLocked() bool {
	return srv.state != serverGone && !srv.retired && !srv.closing && !srv.stale
}

// idleLocked says whether it holds nothing: no request and no child.
func (srv *forkServer) idleLocked() bool {
	return len(srv.queue) == 0 && len(srv.asked) == 0 && len(srv.children) == 0
}

// enqueueLocked asks it to fork p: at once when it is ready, else once it is.
func (srv *forkServer) enqueueLocked(p *forkedProcess) {
	p.srv = srv
	if srv.state == serverReady {
		srv.askLocked(p)
		return
	}
	srv.queue = append(srv.queue, p)
}

// dropQueuedLocked takes p out of the queue (it was killed before it was asked for); a
// fork server still starting that nobody waits for any more is let go.
func (srv *forkServer) dropQueuedLocked(p *forkedProcess) {
	srv.queue = slices.DeleteFunc(srv.queue, func(q *forkedProcess) bool { return q == p })
	if srv.state == serverStarting && srv.idleLocked() && !srv.template {
		srv.owner.closeServerLocked(srv)
	}
}

// askLocked sends p's fork request. A fork server that cannot take it is broken: p is given
// up and the fork server killed.
func (srv *forkServer) askLocked(p *forkedProcess) {
	p.phase = forkAsked
	srv.asked[p.id] = p
	fds := make([]int, len(p.handover))
	for i, f := range p.handover {
		fds[i] = int(f.Fd())
	}
	err := srv.writeLocked(forkCommand{Cmd: p.cmd, ID: p.id, Argv: p.argv, Fresh: p.fresh}, fds)
	if err != nil {
		delete(srv.asked, p.id)
		p.giveUpLocked(ExitStatus{Code: -1, Err: fmt.Errorf("not forked: %w", err)}, "")
		srv.log.Error().Err(err).Msg("fork server unusable: killing it")
		srv.owner.killServerLocked(srv)
	}
}

// writeLocked writes one command with its descriptors. The master's lock is held: a
// command is a few hundred bytes that the socket takes at once unless the fork server is
// wedged, which the deadline bounds.
func (srv *forkServer) writeLocked(cmd forkCommand, fds []int) error {
	msg, err := json.Marshal(cmd)
	if err != nil {
		return err
	}
	msg = append(msg, '\n')
	var rights []byte
	if len(fds) > 0 {
		rights = unix.UnixRights(fds...)
	}
	_ = srv.conn.SetWriteDeadline(time.Now().Add(forkWriteTimeout))
	n, oobn, err := srv.conn.WriteMsgUnix(msg, rights, nil)
	switch {
	case err != nil:
		return fmt.Errorf("fork server channel: %w", err)
	case n != len(msg) || oobn != len(rights):
		return errors.New("fork server channel: short write")
	}
	return nil
}

// read reports what the fork server says until its channel ends.
func (srv *forkServer) read() {
	defer close(srv.readerDone)
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(8*4))
	var line []byte
	for {
		n, oobn, flags, _, err := srv.conn.ReadMsgUnix(buf, oob)
		srv.takeRights(oob[:oobn])
		if flags&unix.MSG_CTRUNC != 0 {
			srv.log.Warn().Msg("fork server: descriptors cut off")
		}
		rest := buf[:n]
		for len(rest) > 0 {
			i := bytes.IndexByte(rest, '\n')
			if i < 0 {
				line = append(line, rest...)
				break
			}
			srv.handle(append(line, rest[:i]...))
			line, rest = line[:0], rest[i+1:]
		}
		if len(line) > maxServerLine {
			srv.log.Error().Int("bytes", len(line)).Msg("fork server: line too long, its channel is closed")
			break
		}
		if err != nil || n == 0 {
			break
		}
	}
	for _, fd := range srv.fds {
		_ = unix.Close(fd)
	}
	srv.fds = nil
}

func (srv *forkServer) takeRights(oob []byte) {
	if len(oob) == 0 {
		return
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	for _, m := range msgs {
		if fds, err := unix.ParseUnixRights(&m); err == nil {
			srv.fds = append(srv.fds, fds...)
		}
	}
}

// handle takes one message of the fork server.
func (srv *forkServer) handle(line []byte) {
	var msg serverMessage
	if err := json.Unmarshal(line, &msg); err != nil {
		srv.log.Warn().Err(err).Msg("bad fork server message")
		return
	}
	pidfd := -1
	if msg.Event == "forked" && msg.Pidfd {
		if len(srv.fds) == 0 {
			srv.log.Warn().Msg("fork server: a pidfd announced but not received")
		} else {
			pidfd, srv.fds = srv.fds[0], srv.fds[1:]
		}
	}
	f := srv.owner
	f.mu.Lock()
	defer f.mu.Unlock()
	switch msg.Event {
	case "ready":
		f.readyLocked(srv, msg)
	case "boot_error":
		line, _ := json.Marshal(map[string]string{"event": "boot_error", "kind": msg.Kind, "error": msg.Error, "traceback": msg.Traceback})
		srv.bootLine = string(line) + "\n"
		srv.log.Debug().Str("error", msg.Error).Msg("fork server could not load the app")
	case "forked":
		srv.forkedLocked(msg, pidfd)
	case "fork_error":
		if p := srv.answeredLocked(msg.ID); p != nil {
			line, _ := json.Marshal(map[string]string{"event": "boot_error", "kind": "worker", "error": "fork server: " + msg.Error})
			p.giveUpLocked(ExitStatus{Code: ExitBootError}, string(line)+"\n")
		}
	case "stale":
		f.staleLocked(srv, msg)
	case "exit":
		if p := srv.children[msg.Pid]; p != nil {
			delete(srv.children, msg.Pid)
			st := ExitStatus{Code: msg.Code, Signal: syscall.Signal(msg.Signal)}
			if msg.Signal == 0 && msg.Code < 0 {
				st = ExitStatus{Code: -1, Err: ErrStatusUnknown}
			}
			p.exitedLocked(st)
			f.closeIfIdleLocked(srv)
		}
	default:
		srv.log.Warn().Str("event", msg.Event).Msg("unknown fork server message")
	}
}

// answeredLocked takes the request id off the requests awaiting an answer.
func (srv *forkServer) answeredLocked(id int) *forkedProcess {
	p := srv.asked[id]
	delete(srv.asked, id)
	return p
}

func (srv *forkServer) forkedLocked(msg serverMessage, pidfd int) {
	p := srv.answeredLocked(msg.ID)
	if p == nil || msg.Pid <= 0 {
		if pidfd >= 0 {
			_ = unix.Close(pidfd)
		}
		srv.log.Warn().Int("id", msg.ID).Msg("fork server answered a request it was not asked")
		return
	}
	srv.forks++
	srv.children[msg.Pid] = p
	p.runningLocked(srv, msg.Pid, pidfd, msg.Start)
	if p.serves != nil {
		p.serves.pid = msg.Pid
	}
	srv.log.Debug().Str("forked", p.what).Int("forked_pid", msg.Pid).Bool("pidfd", pidfd >= 0).Msg(MsgForked)
}

// startExecServer starts a fork server process with exec: an app server for generation
// gen, or the template. Its goroutines are the ForkServer's.
func (f *ForkServer) startExecServer(gen int, template bool) (*forkServer, error) {
	conn, child, err := channelPair("fork-server")
	if err != nil {
		return nil, err
	}
	defer child.Close()
	srv := f.newServerLocked(gen, template, conn)
	cmd := f.Exec.command(append([]string{"--fork-server-fd", "3"}, f.serverArgs(template)...), []*os.File{child})
	p, err := startProcess(cmd, NewLineLogger(srv.log, "stdout"), NewLineLogger(srv.log, "stderr"))
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("start fork server %s: %w", f.Exec.Python, err)
	}
	srv.proc, srv.pid = p, p.Pid()
	f.superviseLocked(srv)
	return srv, nil
}

// newServerLocked makes the master's record of a fork server about to start.
func (f *ForkServer) newServerLocked(gen int, template bool, conn *net.UnixConn) *forkServer {
	f.seq++
	f.starts++
	srv := &forkServer{owner: f, seq: f.seq, gen: gen, template: template, conn: conn,
		startedAt: time.Now(), readerDone: make(chan struct{}),
		asked: map[int]*forkedProcess{}, children: map[int]*forkedProcess{}}
	srv.log = f.Log.With().Str("component", "fork_server").Int("fork_server", srv.seq).Int("generation", gen).Logger()
	if template {
		srv.log = srv.log.With().Bool("template", true).Logger()
		f.template = srv
		f.templates = append(f.templates, srv)
	} else {
		f.servers = append(f.servers, srv)
	}
	return srv
}

// superviseLocked starts the goroutines of a fork server: its channel's reader and the
// one that waits for its process.
func (f *ForkServer) superviseLocked(srv *forkServer) {
	f.wg.Add(2)
	go func() {
		defer f.wg.Done()
		srv.read()
	}()
	go func() {
		defer f.wg.Done()
		st := srv.proc.Wait()
		// What it said before it exited is in the socket; a child that kept the channel
		// (it closes it first thing) must not hold the reader for ever.
		_ = srv.conn.SetReadDeadline(time.Now().Add(outputDrain))
		<-srv.readerDone
		_ = srv.conn.Close()
		f.serverGone(srv, st)
	}()
}

// channelPair is a socketpair: the master's end as a connection, the other as a file to
// hand over.
func channelPair(name string) (*net.UnixConn, *os.File, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("%s socketpair: %w", name, err)
	}
	masterFile := os.NewFile(uintptr(fds[0]), name+"-master")
	child := os.NewFile(uintptr(fds[1]), name+"-child")
	conn, err := net.FileConn(masterFile)
	_ = masterFile.Close()
	if err != nil {
		_ = child.Close()
		return nil, nil, fmt.Errorf("%s socketpair: %w", name, err)
	}
	return conn.(*net.UnixConn), child, nil
}
