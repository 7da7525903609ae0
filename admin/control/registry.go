package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The registry is how `herd status` finds a master without being told where: each master
// writes one small JSON file, named by its pid, into a per-user directory:
//
//	$XDG_RUNTIME_DIR/herd/<pid>.json   when XDG_RUNTIME_DIR is set (systemd sessions)
//	/tmp/herd-<uid>/<pid>.json         otherwise
//
// like a pidfile that also says where the control socket is. The file goes when the master
// exits; files of masters that died without cleaning up are ignored and removed by readers.

// Entry describes one running master.
type Entry struct {
	Pid     int       `json:"pid"`
	Socket  string    `json:"socket"`
	App     string    `json:"app"`
	HTTP    []string  `json:"http"`
	Dir     string    `json:"dir"` // the master's working directory
	Started time.Time `json:"started"`
}

// RegistryDir is the per-user directory of entries.
func RegistryDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "herd")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("herd-%d", os.Getuid()))
}

// Register writes e into the registry and returns the file's path, for Unregister.
func Register(e Entry) (string, error) {
	dir := RegistryDir()
	if err := ensurePrivateDir(dir); err != nil {
		return "", err
	}
	b, err := json.Marshal(e)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, strconv.Itoa(e.Pid)+".json")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return "", fmt.Errorf("registry: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("registry: %w", err)
	}
	return path, nil
}

// ensurePrivateDir creates dir 0700, or checks that an existing one is ours and private: in
// a shared /tmp another user could otherwise plant entries pointing at their own socket.
func ensurePrivateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || fi.Mode().Perm()&0o077 != 0 || ok && int(st.Uid) != os.Getuid() {
		return fmt.Errorf("registry: %s must be a directory of uid %d with mode 0700", dir, os.Getuid())
	}
	return nil
}

// Entries lists the registered masters that are alive, removing the entries of dead ones.
func Entries() ([]Entry, error) {
	dir := RegistryDir()
	names, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	if err := ensurePrivateDir(dir); err != nil {
		return nil, err
	}
	var out []Entry
	for _, n := range names {
		if !strings.HasSuffix(n.Name(), ".json") {
			continue
		}
		path := filepath.Join(dir, n.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var e Entry
		if json.Unmarshal(b, &e) != nil || e.Pid <= 0 {
			continue
		}
		if !alive(e.Pid) {
			_ = os.Remove(path)
			continue
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int { return a.Pid - b.Pid })
	return out, nil
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Target says which master a client command means; the zero value means "the only one
// running, or the only one started in this directory".
type Target struct {
	Socket  string // the control socket's path
	Pid     int    // the master's pid
	Pidfile string // a file holding the master's pid (--pidfile / gunicorn's --pid)
}

// Find returns the control socket of the master t means.
func Find(t Target) (string, error) {
	if t.Socket != "" {
		return t.Socket, nil
	}
	if t.Pidfile != "" {
		b, err := os.ReadFile(t.Pidfile)
		if err != nil {
			return "", fmt.Errorf("pidfile: %w", err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			return "", fmt.Errorf("pidfile %s does not hold a pid: %q", t.Pidfile, strings.TrimSpace(string(b)))
		}
		t.Pid = pid
	}
	entries, err := Entries()
	if err != nil {
		return "", err
	}
	if t.Pid != 0 {
		for _, e := range entries {
			if e.Pid == t.Pid {
				return e.Socket, nil
			}
		}
		return "", fmt.Errorf("no running herd master with pid %d is registered in %s", t.Pid, RegistryDir())
	}
	switch len(entries) {
	case 0:
		return "", fmt.Errorf("no running herd master found in %s (give --control-socket, --pid or --pidfile)", RegistryDir())
	case 1:
		return entries[0].Socket, nil
	}
	cwd, _ := os.Getwd()
	var here []Entry
	for _, e := range entries {
		if e.Dir == cwd {
			here = append(here, e)
		}
	}
	if len(here) == 1 {
		return here[0].Socket, nil
	}
	var lines []string
	for _, e := range entries {
		lines = append(lines, fmt.Sprintf("pid %d: %s in %s", e.Pid, e.App, e.Dir))
	}
	return "", fmt.Errorf("%d herd masters are running; choose one with --pid:\n  %s", len(entries), strings.Join(lines, "\n  "))
}
