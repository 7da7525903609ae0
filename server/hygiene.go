package server

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
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
