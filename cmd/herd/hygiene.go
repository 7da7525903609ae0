package main

import (
	"bytes"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/herd-server/herd/scripts"
	"github.com/herd-server/herd/supervisor"
)

// applyUmask sets --umask before the master creates any file or socket.
func applyUmask(octal string) error {
	if octal == "" {
		return nil
	}
	mask, err := strconv.ParseUint(octal, 8, 32)
	if err != nil || mask > 0o777 {
		return fmt.Errorf("umask: %q is not an octal mode such as 022", octal)
	}
	syscall.Umask(int(mask))
	return nil
}

// writePidfile writes the master's pid through a temporary file and a rename, so that a
// reader (herd status --pidfile, an init script) never sees a half-written file.
func writePidfile(path string) error {
	if path == "" {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("pidfile: %w", err)
	}
	_, werr := fmt.Fprintf(tmp, "%d\n", os.Getpid())
	cerr := tmp.Close()
	if err := chmodPidfile(tmp.Name(), werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("pidfile: %w", err)
	}
	return nil
}

func chmodPidfile(name string, errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return fmt.Errorf("pidfile: %w", err)
		}
	}
	// CreateTemp makes 0600; a pidfile is for anyone to read (within the umask).
	mask := syscall.Umask(0)
	syscall.Umask(mask)
	if err := os.Chmod(name, 0o644&^os.FileMode(mask)); err != nil {
		return fmt.Errorf("pidfile: %w", err)
	}
	return nil
}

// removePidfile removes the pidfile only while it still holds this master's pid: after a
// USR2 upgrade the new master has rewritten it and the old one must leave it be.
func removePidfile(path string) {
	if path == "" {
		return
	}
	b, err := os.ReadFile(path)
	if err == nil && string(bytes.TrimSpace(b)) == strconv.Itoa(os.Getpid()) {
		_ = os.Remove(path)
	}
}

// workerCredential resolves --uid and --gid to the credential the workers run with; nil
// when neither is set. An unknown name is an error naming its key; then, only root may
// change the workers' user (the names are checked first, so that herd check run as another
// user still says whether they exist).
func workerCredential(uidName, gidName string) (*syscall.Credential, error) {
	if uidName == "" && gidName == "" {
		return nil, nil
	}
	cred := &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{}}
	if uidName != "" {
		u, err := user.Lookup(uidName)
		if err != nil {
			if u, err = user.LookupId(uidName); err != nil {
				return nil, fmt.Errorf("uid: no user %q: %w", uidName, err)
			}
		}
		id, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		cred.Uid, cred.Gid = uint32(id), uint32(gid)
	}
	if gidName != "" {
		g, err := user.LookupGroup(gidName)
		if err != nil {
			if g, err = user.LookupGroupId(gidName); err != nil {
				return nil, fmt.Errorf("gid: no group %q: %w", gidName, err)
			}
		}
		id, _ := strconv.ParseUint(g.Gid, 10, 32)
		cred.Gid = uint32(id)
	}
	if os.Geteuid() != 0 {
		key := "uid"
		if uidName == "" {
			key = "gid"
		}
		return nil, fmt.Errorf("%s: only root may run the workers as another user or group (herd runs as uid %d)", key, os.Geteuid())
	}
	// Groups empty: setgroups drops root's supplementary groups, leaving just cred.Gid.
	return cred, nil
}

// withCredential makes the spawner run workers as cred, handing them their code inline.
func withCredential(s *supervisor.ExecSpawner, cred *syscall.Credential) *supervisor.ExecSpawner {
	if cred != nil {
		s.Credential = cred
		s.ScriptSource = string(scripts.WorkerPy)
	}
	return s
}
