package spawn

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// ForkServer is the Spawner of --preload: a fork server, a Python process of herd's worker
// package, imports the app once, freezes what it imported (gc.freeze) and forks the
// workers, which share its memory copy-on-write and start in milliseconds. Each generation
// has its own fork server, started when the first of its workers is asked for: a reload
// imports the new code once in a new fork server, then forks the new workers from it; the
// old one goes once its last worker has exited. A fork server that dies is restarted with
// backoff; the workers it forked serve on meanwhile.
//
// With Develop (development mode), the fork servers are forked themselves, from a
// template: a process that imported no app, only the standard library and third-party
// modules the app used (django, flask and what they import), which the app servers report
// and the template imports ahead of the next generation. A reload then asks the newest app
// server to fork the worker if nothing it imported changed on disk (a saved view that no
// module imports at start), else the template to fork a new app server, which imports the
// project's own modules only.
//
// The supervisor waits for each worker through its Process as for an exec'd one: its death
// comes from a pidfd the fork server sends with each fork, its exit status from the fork
// server, which reaps it (docs/protocol.md, docs/lifecycle.md). Close ends the fork
// servers; call it once the supervisor's Run has returned.
type ForkServer struct {
	Exec *Exec
	Log  zerolog.Logger
	// Hooks is the gunicorn config file whose pre_fork, post_fork and post_worker_init the
	// fork servers run ("" none).
	Hooks string
	// Develop: development mode, fork servers forked from a template (see above).
	Develop bool

	mu       sync.Mutex
	servers  []*forkServer // app servers not reaped yet, oldest first
	template *forkServer   // Develop: the template new app servers are forked from; nil: none
	// templates are the templates not reaped yet (a stale one ends once its last app
	// server has), the current one included.
	templates []*forkServer
	seq       int
	closed    bool
	restart   *time.Timer // an unexpected death's replacement, due
	deaths    int         // unexpected deaths in a row
	starts    uint64
	crashes   uint64
	wg        sync.WaitGroup
}

// Log messages tests follow.
const (
	MsgForkServerReady = "fork server ready"
	MsgForkServerDied  = "fork server died: its workers keep serving"
	MsgForkServerStale = "fork server stale: the code it imported changed"
	MsgForked          = "forked"
)

// forkServerStable: a fork server that was ready that long before it died starts a new row
// of deaths (its replacement starts at once); shorter lives double the wait each time.
const forkServerStable = 5 * time.Second

// Spawn implements Spawner. It never waits for a fork server: the worker is forked once
// its generation's fork server is ready, and until then its Process has pid 0.
func (f *ForkServer) Spawn(spec Spec) (Process, error) {
	what := "worker " + strconv.Itoa(spec.ID)
	p, err := newForkedProcess(what, spec.ID, spec.Generation, &f.mu, []*os.File{spec.Listen, spec.Control}, spec.Stdout, spec.Stderr)
	if err != nil {
		return nil, err
	}
	p.cmd, p.argv = "fork", []string{"--worker-id", strconv.Itoa(spec.ID)}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		p.closeAll()
		return nil, fmt.Errorf("%s: the fork servers are closed", what)
	}
	if err := f.placeLocked(p); err != nil {
		p.closeAll()
		return nil, err
	}
	return p, nil
}

// placeLocked gives p to the fork server that is to fork it, starting one if need be. In
// development the fork server checks first that what it imported did not change, unless it
// was started for this very request: it imported the code just now, and a save made
// meanwhile brings a reload of its own (checking again could only find what its own import
// wrote, for ever).
func (f *ForkServer) placeLocked(p *forkedProcess) error {
	var srv *forkServer
	var created bool
	var err error
	if p.serves != nil {
		srv, created, err = f.templateLocked()
	} else {
		srv, created, err = f.appServerLocked(p.gen)
	}
	if err != nil {
		return err
	}
	p.fresh = f.Develop && !created
	srv.enqueueLocked(p)
	return nil
}

// appServerLocked is the fork server for generation gen's workers: the generation's own
// (Develop: the newest, which says when it is stale), or a new one (created).
func (f *ForkServer) appServerLocked(gen int) (srv *forkServer, created bool, err error) {
	for i := len(f.servers) - 1; i >= 0; i-- {
		if srv := f.servers[i]; srv.usableLocked() && (f.Develop || srv.gen == gen) {
			return srv, false, nil
		}
	}
	if !f.Develop {
		srv, err = f.startExecServer(gen, false)
	} else {
		srv, err = f.forkAppServerLocked(gen)
	}
	return srv, err == nil, err
}

// forkAppServerLocked (Develop) starts a fork server for generation gen by asking the
// template to fork one.
func (f *ForkServer) forkAppServerLocked(gen int) (*forkServer, error) {
	conn, child, err := channelPair("fork-server")
	if err != nil {
		return nil, err
	}
	defer child.Close()
	srv := f.newServerLocked(gen, false, conn)
	logger := NewLineLogger(srv.log, "stdout")
	p, err := newForkedProcess("fork server "+strconv.Itoa(srv.seq), -srv.seq, gen, &f.mu, []*os.File{child}, logger, NewLineLogger(srv.log, "stderr"))
	if err == nil {
		p.cmd, p.serves = "fork_server", srv
		srv.proc = p
		err = f.placeLocked(p)
	}
	if err != nil {
		f.servers = f.servers[:len(f.servers)-1]
		_ = conn.Close()
		if p != nil {
			p.closeAll()
		}
		return nil, err
	}
	f.superviseLocked(srv)
	return srv, nil
}

// templateLocked (Develop) is the running template, or a new one (created).
func (f *ForkServer) templateLocked() (*forkServer, bool, error) {
	if t := f.template; t != nil && t.usableLocked() {
		return t, false, nil
	}
	t, err := f.startExecServer(0, true)
	return t, err == nil, err
}

// serverArgs are a fork server's own options after --fork-server-fd.
func (f *ForkServer) serverArgs(template bool) []string {
	var args []string
	if f.Hooks != "" {
		args = append(args, "--hooks", f.Hooks)
	}
	if template {
		args = append(args, "--template")
	}
	if f.Develop {
		args = append(args, "--watch")
	}
	return args
}

// readyLocked: srv imported what it imports. Its waiting requests are sent; the app servers
// of older generations retire; in development the template learns which modules to import.
func (f *ForkServer) readyLocked(srv *forkServer, msg serverMessage) {
	srv.state, srv.readyAt, srv.python = serverReady, time.Now(), msg.Python
	srv.log.Info().Int("pid", srv.pid).Dur("boot_ms", srv.readyAt.Sub(srv.startedAt)).Msg(MsgForkServerReady)
	if !srv.template {
		if f.newerLocked(srv.gen) && !f.Develop {
			// A restart of a generation a newer one replaced meanwhile: it forks nothing.
			srv.retired = true
		}
		for _, old := range f.servers {
			if old != srv && (f.Develop || old.gen < srv.gen) && old.state != serverGone {
				old.retired = true
				f.closeIfIdleLocked(old)
			}
		}
		if t := f.template; t != nil && t.state == serverReady && len(msg.Modules) > 0 {
			if err := t.writeLocked(forkCommand{Cmd: "preload", Modules: msg.Modules}, nil); err != nil {
				t.log.Warn().Err(err).Msg("template: modules not sent")
			}
		}
	}
	queue := srv.queue
	srv.queue = nil
	for _, p := range queue {
		srv.askLocked(p)
	}
	f.closeIfIdleLocked(srv)
}

// newerLocked says whether an app server of a generation after gen is usable.
func (f *ForkServer) newerLocked(gen int) bool {
	return slices.ContainsFunc(f.servers, func(s *forkServer) bool { return s.gen > gen && s.usableLocked() })
}

// staleLocked (Develop): srv would not fork, the code it imported changed on disk. It
// retires, and the request goes to a new app server (from the template) or, when the
// template itself is stale, to a new template.
func (f *ForkServer) staleLocked(srv *forkServer, msg serverMessage) {
	p := srv.answeredLocked(msg.ID)
	srv.stale = true
	srv.log.Info().Str("changed", msg.Changed).Msg(MsgForkServerStale)
	if srv == f.template {
		f.template = nil
	}
	srv.retired = true
	f.closeIfIdleLocked(srv)
	if p == nil {
		return
	}
	p.phase = forkPending
	if err := f.placeLocked(p); err != nil {
		p.giveUpLocked(ExitStatus{Code: -1, Err: fmt.Errorf("not forked: %w", err)}, "")
	}
}

// closeIfIdleLocked lets a retired fork server go once it holds nothing.
func (f *ForkServer) closeIfIdleLocked(srv *forkServer) {
	if srv.retired && srv.idleLocked() {
		f.closeServerLocked(srv)
	}
}

// closeServerLocked lets a fork server go: it exits at the end of its channel; one still
// importing is killed (it holds nothing and would not read the end before its import).
func (f *ForkServer) closeServerLocked(srv *forkServer) {
	if srv.closing || srv.state == serverGone {
		return
	}
	srv.closing = true
	_ = srv.conn.CloseWrite()
	if srv.state == serverStarting {
		f.killServerLocked(srv)
	}
}

// killServerLocked sends SIGKILL to a fork server (a template's child is signalled by its
// pidfd; one not forked yet is given up).
func (f *ForkServer) killServerLocked(srv *forkServer) {
	srv.closing = true
	if p, ok := srv.proc.(*forkedProcess); ok {
		_ = p.killLocked(syscall.SIGKILL)
		return
	}
	_ = srv.proc.Signal(syscall.SIGKILL)
}

// wedged: p was killed while its fork was asked for, and its fork server has not answered
// since: the fork server is killed, which gives p up.
func (srv *forkServer) wedged(p *forkedProcess) {
	f := srv.owner
	f.mu.Lock()
	defer f.mu.Unlock()
	if p.phase == forkAsked && srv.state != serverGone {
		srv.log.Error().Str("waiting", p.what).Dur("after_ms", forkAnswerTimeout).Msg("fork server does not answer: killing it")
		f.killServerLocked(srv)
	}
}

// serverGone handles a fork server's exit: the requests it did not answer fail, its
// children's exits will not be reported, and an unexpected death is replaced.
func (f *ForkServer) serverGone(srv *forkServer, st ExitStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	srv.state = serverGone
	f.forgetLocked(srv)
	unexpected := !srv.closing && !f.closed && !srv.readyAt.IsZero()
	for id, p := range srv.asked {
		delete(srv.asked, id)
		p.giveUpLocked(ExitStatus{Code: -1, Err: fmt.Errorf("not forked: the fork server exited before it answered (%s)", st)}, "")
	}
	for pid, p := range srv.children {
		delete(srv.children, pid)
		p.orphanedLocked()
	}
	queue := srv.queue
	srv.queue = nil
	for _, p := range queue {
		switch {
		case srv.bootLine != "":
			p.giveUpLocked(ExitStatus{Code: ExitAppImport}, srv.bootLine)
		case srv.readyAt.IsZero() || f.closed:
			line := fmt.Sprintf(`{"event": "boot_error", "kind": "worker", "error": %q, "traceback": ""}`+"\n",
				fmt.Sprintf("its fork server exited before it was ready (%s); its output is in the log above", st))
			p.giveUpLocked(ExitStatus{Code: ExitBootError}, line)
		default:
			p.phase = forkPending
			if err := f.placeLocked(p); err != nil {
				p.giveUpLocked(ExitStatus{Code: -1, Err: fmt.Errorf("not forked: %w", err)}, "")
			}
		}
	}
	log := srv.log.With().Int("pid", srv.pid).Str("exit", st.String()).Logger()
	if !unexpected {
		log.Debug().Msg("fork server exited")
		return
	}
	f.crashes++
	if time.Since(srv.readyAt) >= forkServerStable {
		f.deaths = 0
	}
	f.deaths++
	delay := time.Duration(0)
	if f.deaths > 1 {
		delay = min(backoffCap, 100*time.Millisecond<<min(f.deaths-2, 10))
	}
	log.Error().Int("deaths_in_a_row", f.deaths).Dur("restart_in_ms", delay).Msg(MsgForkServerDied)
	f.scheduleRestartLocked(srv, delay)
}

// backoffCap is the longest wait before a fork server that keeps dying is started again.
const backoffCap = 10 * time.Second

// scheduleRestartLocked starts a replacement for a fork server that died, after delay,
// unless one runs by then.
func (f *ForkServer) scheduleRestartLocked(dead *forkServer, delay time.Duration) {
	if f.restart != nil {
		f.restart.Stop()
	}
	f.restart = time.AfterFunc(delay, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.closed {
			return
		}
		var err error
		switch {
		case dead.template:
			_, _, err = f.templateLocked()
		case !f.Develop && !f.newerLocked(dead.gen-1):
			_, _, err = f.appServerLocked(dead.gen)
		default:
			// Development: the next reload starts one from the template; a newer
			// generation's fork server makes this one useless.
		}
		if err != nil {
			f.Log.Error().Err(err).Msg("fork server not restarted")
		}
	})
}

// forgetLocked drops a fork server that exited from the master's lists.
func (f *ForkServer) forgetLocked(srv *forkServer) {
	if f.template == srv {
		f.template = nil
	}
	same := func(s *forkServer) bool { return s == srv }
	f.servers = slices.DeleteFunc(f.servers, same)
	f.templates = slices.DeleteFunc(f.templates, same)
}

// Close lets every fork server go, kills those still there after a second, and waits for
// them (and every goroutine of the ForkServer) to end.
func (f *ForkServer) Close() {
	f.mu.Lock()
	f.closed = true
	if f.restart != nil {
		f.restart.Stop()
	}
	for _, srv := range f.allLocked() {
		for _, p := range srv.queue {
			p.giveUpLocked(ExitStatus{Code: -1, Signal: syscall.SIGKILL}, "")
		}
		srv.queue = nil
		f.closeServerLocked(srv)
	}
	f.mu.Unlock()
	kill := time.AfterFunc(time.Second, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, srv := range f.allLocked() {
			f.killServerLocked(srv)
		}
	})
	f.wg.Wait()
	kill.Stop()
}

func (f *ForkServer) allLocked() []*forkServer {
	all := append([]*forkServer{}, f.servers...)
	return append(all, f.templates...)
}
