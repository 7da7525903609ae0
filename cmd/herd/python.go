package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// resolvePython asks the configured interpreter for its real path and version, once. Every
// worker then execs the real binary: a pyenv or asdf shim costs a few hundred milliseconds
// per start, which would be paid again on every respawn.
func resolvePython(python string) (string, error) {
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
	return executable, nil
}
