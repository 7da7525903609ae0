package server

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/rs/zerolog"
)

// The runtime directory holds the worker sockets, the worker's code and spooled bodies for
// one master's run, and goes when the master exits. A master that is SIGKILLed cannot
// remove it, so each one names its master in a file (masterFile: pid and start time, which
// tell a live master from a later process that got the same pid, and the PID namespace
// they are numbers in), and the next master to start removes the directories of masters
// that are gone. A master in another PID namespace (a container sharing TMPDIR, herd as
// PID 1 under unshare) is not visible by its pid from here: each master names its PID
// namespace in a file of its own (nsFile; the master file keeps the form older herds read,
// or they would take every newer master for a dead one), and a directory of another
// namespace is left alone.

const (
	runDirPattern = "herd-"
	masterFile    = "master"
	nsFile        = "pidns"
	// initPIDNamespace is the host's PID namespace: the kernel gives it this inode
	// (PROC_PID_INIT_INO).
	initPIDNamespace = "pid:[4026531836]"
)

// makeRunDir creates this master's private runtime directory (0700) and marks it as its
// own, after removing what dead masters of the same user left in the same place.
func makeRunDir(log zerolog.Logger) (string, error) {
	removeStaleRunDirs(os.TempDir(), log)
	dir, err := os.MkdirTemp("", runDirPattern)
	if err != nil {
		return "", fmt.Errorf("create runtime directory: %w", err)
	}
	start, err := processStart(os.Getpid())
	if err == nil { // the namespace first: whoever sees the master file sees it too
		err = os.WriteFile(filepath.Join(dir, nsFile), []byte(pidNamespace()+"\n"), 0o600)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, masterFile), fmt.Appendf(nil, "%d %s\n", os.Getpid(), start), 0o600)
	}
	if err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("create runtime directory: %w", err)
	}
	return dir, nil
}

// removeStaleRunDirs removes the runtime directories under tmp that belong to this user and
// whose master is gone. A directory without the master file (another program's, or being
// made right now) is left alone.
func removeStaleRunDirs(tmp string, log zerolog.Logger) {
	ourNS := pidNamespace()
	dirs, _ := filepath.Glob(filepath.Join(tmp, runDirPattern+"*"))
	for _, dir := range dirs {
		fi, err := os.Lstat(dir)
		st, ok := fileStat(fi)
		if err != nil || !fi.IsDir() || !ok || st.Uid != uint32(os.Geteuid()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, masterFile))
		if err != nil {
			continue
		}
		pidText, start, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 {
			continue
		}
		if !sameNamespace(dir, ourNS) {
			continue // its pid is another namespace's: it may well be alive
		}
		if now, err := processStart(pid); err == nil && now == start {
			continue // its master is alive
		}
		if err := os.RemoveAll(dir); err == nil {
			log.Info().Str("runtime_dir", dir).Int("master_pid", pid).Msg("removed the runtime directory of a master that is gone")
		}
	}
}

func fileStat(fi os.FileInfo) (*syscall.Stat_t, bool) {
	if fi == nil {
		return nil, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return st, ok
}

// processStart is a process's start time in clock ticks since boot (field 22 of
// /proc/PID/stat), as text: with the pid it names one process for the life of the system.
func processStart(pid int) (string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", err
	}
	// The command name (field 2) may hold spaces and parentheses: count from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 20 {
		return "", fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	return fields[19], nil // field 22 of the whole line
}

// sameNamespace says whether the master of dir counted its pid in ours. A directory of an
// older herd does not say: it is taken for the host's (where herds ran), so only a master
// in the host's namespace judges it.
func sameNamespace(dir, ours string) bool {
	b, err := os.ReadFile(filepath.Join(dir, nsFile))
	if err != nil {
		return ours == initPIDNamespace
	}
	return strings.TrimSpace(string(b)) == ours
}

// pidNamespace names this process's PID namespace ("pid:[4026531836]"), "?" when it cannot
// be read (then no other master's directory looks like one of ours).
func pidNamespace() string {
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil || strings.ContainsAny(ns, " \n") {
		return "?"
	}
	return ns
}
