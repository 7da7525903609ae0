package server

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/herd-server/herd/internal/listener"
)

// A binary upgrade (SIGUSR2), as gunicorn and nginx do it: the master starts the herd binary
// found at the path it was started from (a new version, after a deploy) with the same
// arguments, handing over its listening sockets. The new master boots its own workers; once
// they serve, it sends SIGTERM to the old master, which drains like any graceful stop. The
// listening sockets are never closed in between (both processes hold them), so no
// connection is refused: the kernel queues it until one of the two accepts it. If the new
// master fails to start, the old one never hears from it and keeps serving.

// envUpgradeFrom tells a master it was started by USR2 and names the master to retire.
const envUpgradeFrom = "HERD_UPGRADE_FROM"

// upgrader starts new masters on USR2, one at a time.
type upgrader struct {
	log     zerolog.Logger
	dep     *deployment
	exe     string // the binary path as this master was started, resolved now
	pidfile string // --pidfile, which the new master takes over and this one takes back if it dies
	running atomic.Bool
}

func newUpgrader(log zerolog.Logger, dep *deployment, pidfile string) *upgrader {
	u := &upgrader{log: log.With().Str("component", "upgrade").Logger(), dep: dep, pidfile: pidfile}
	// Resolved at start-up rather than through /proc/self/exe: after a deploy that path is
	// the new binary, while /proc/self/exe is this (possibly deleted) one.
	if exe, err := exec.LookPath(os.Args[0]); err == nil {
		if abs, err := filepath.Abs(exe); err == nil {
			u.exe = abs
		}
	}
	return u
}

// start launches the new master. Errors are logged: the old master serves on regardless.
func (u *upgrader) start() {
	if !u.running.CompareAndSwap(false, true) {
		u.log.Warn().Msg("USR2: an upgrade is already in progress; ignoring the signal")
		return
	}
	pid, err := u.spawn()
	if err != nil {
		u.running.Store(false)
		u.log.Error().Err(err).Msg("USR2: cannot start a new master; this one keeps serving")
		return
	}
	u.log.Info().Int("new_pid", pid).Str("binary", u.exe).
		Msg("USR2: new master started; this one drains once the new one serves")
}

func (u *upgrader) spawn() (int, error) {
	if u.exe == "" {
		return 0, fmt.Errorf("the path of the herd binary (%q) could not be resolved at start-up", os.Args[0])
	}
	files, env, err := u.dep.handOver()
	if err != nil {
		return 0, err
	}
	defer func() {
		for _, f := range files {
			_ = f.Close()
		}
	}()
	cmd := exec.Command(u.exe, os.Args[1:]...)
	cmd.Env = append(withoutHandOverEnv(os.Environ()), env...)
	cmd.Env = append(cmd.Env, envUpgradeFrom+"="+strconv.Itoa(os.Getpid()))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = files
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", u.exe, err)
	}
	pid := cmd.Process.Pid
	u.dep.upgrading(pid)
	// The one goroutine that reaps the new master. It returns only if the new master exits
	// while this one still runs: before taking over (it could not start), or much later.
	go func() {
		err := cmd.Wait()
		u.dep.upgrading(0)
		u.running.Store(false)
		u.log.Warn().Int("new_pid", pid).Str("exit", fmt.Sprint(err)).Msg("the new master exited; this one keeps serving")
		u.reclaimPidfile(pid)
	}()
	return pid, nil
}

// reclaimPidfile points --pidfile back at this master once the new one died: the new master
// wrote its own pid at start and removed the file as it exited, which would leave init
// scripts and `herd status --pidfile` with no master to find.
func (u *upgrader) reclaimPidfile(newPid int) {
	if u.pidfile == "" {
		return
	}
	b, err := os.ReadFile(u.pidfile)
	if err == nil && strings.TrimSpace(string(b)) != strconv.Itoa(newPid) {
		return // someone else's by now
	}
	if err := writePidfile(u.pidfile); err != nil {
		u.log.Error().Err(err).Str("pidfile", u.pidfile).Msg("cannot take the pidfile back from the failed new master")
	}
}

// withoutHandOverEnv drops the socket hand-over variables this master itself may have
// inherited (from systemd or an earlier upgrade): the new master gets fresh ones.
func withoutHandOverEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case listener.EnvFDs, listener.EnvFDNames, listener.EnvPID, listener.EnvFromParent, envUpgradeFrom:
			continue
		}
		out = append(out, kv)
	}
	return out
}

// takeUpgradeParent returns the pid of the master this one replaces (0 when not started by
// USR2), and removes the variable so that the workers and later upgrades do not see it.
func takeUpgradeParent() int {
	v, ok := os.LookupEnv(envUpgradeFrom)
	if !ok {
		return 0
	}
	_ = os.Unsetenv(envUpgradeFrom)
	pid, err := strconv.Atoi(v)
	if err != nil || pid != os.Getppid() {
		return 0 // not from our parent: a stray variable, never a reason to signal anyone
	}
	return pid
}

// retireOldMaster tells the master this one replaces to drain and exit: called once this
// one serves.
func retireOldMaster(log zerolog.Logger, oldPid int) {
	if oldPid == 0 || os.Getppid() != oldPid {
		return // it is gone already, and its pid may name another process by now
	}
	if err := syscall.Kill(oldPid, syscall.SIGTERM); err != nil {
		log.Error().Err(err).Int("old_pid", oldPid).Msg("upgrade: cannot signal the old master")
		return
	}
	log.Info().Int("old_pid", oldPid).Msg("upgrade: serving; the old master drains and exits")
}
