package spawn

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ResolvePython asks the configured interpreter for its real path and version, once. Every
// worker then execs the real binary: a pyenv or asdf shim costs a few hundred milliseconds
// per start, which would be paid again on every respawn.
//
// Asking costs a Python start (about 25 ms here, before any worker can start), so the answer
// of a real interpreter is remembered in herd's cache: see knownPython.
func ResolvePython(python string) (string, error) {
	path, note := knownPython(python)
	if note != "" {
		if _, err := os.Stat(note); err == nil {
			return path, nil
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, python, "-c",
		"import sys; print(sys.version_info[0], sys.version_info[1], sys.executable)").Output()
	if err != nil {
		return "", fmt.Errorf("python: cannot run %q: %w", python, err)
	}
	var major, minor int
	var executable string
	fields := strings.SplitN(strings.TrimSpace(string(out)), " ", 3)
	if len(fields) == 3 {
		_, _ = fmt.Sscan(fields[0], &major)
		_, _ = fmt.Sscan(fields[1], &minor)
		executable = fields[2]
	}
	if major != 3 || minor < 8 {
		return "", fmt.Errorf("python: %q is Python %d.%d; herd's worker needs Python 3.8 or newer", python, major, minor)
	}
	if executable == "" {
		return python, nil
	}
	if note != "" && filepath.Clean(executable) == path {
		// Only a speed-up: when it cannot be written, the next start asks again.
		_ = writeFileAtomic(filepath.Dir(note), filepath.Base(note), fmt.Appendf(nil, "%s: Python %d.%d\n", path, major, minor), 0o600)
	}
	return executable, nil
}

// knownPython returns the absolute path exec would run for python, and the file in herd's
// cache whose presence says that this very binary passed ResolvePython's check with that
// path as its answer: "" when its answer cannot be remembered. That is so only for an ELF
// executable (a shim is a script, whose answer depends on the directory and environment);
// the note is named by the binary's path, inode, size and times, so an upgrade replacing it
// asks again. The note holds nothing that is trusted: at worst a stale one skips the check
// of the version, which the worker makes too.
func knownPython(python string) (path, note string) {
	path, err := exec.LookPath(python)
	if err != nil {
		return "", ""
	}
	if path, err = filepath.Abs(path); err != nil {
		return "", ""
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", ""
	}
	f, err := os.Open(real)
	if err != nil {
		return "", ""
	}
	defer f.Close()
	magic := make([]byte, 4)
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return "", ""
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if _, err := io.ReadFull(f, magic); err != nil || !ok || !bytes.Equal(magic, []byte("\x7fELF")) {
		return "", ""
	}
	dir, err := cacheDir("python")
	if err != nil {
		return "", ""
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d %d %d %d.%d %d.%d", path, real,
		st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec))
	return path, filepath.Join(dir, hex.EncodeToString(sum[:16]))
}
