package server

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// TestDevStopsWhenTerminalCloses: `herd dev` in a real terminal (tmux); closing the terminal
// (killing the tmux session hangs it up: SIGHUP with the terminal gone) stops herd, where a
// SIGHUP with the terminal still there reloads. A --reload-extra glob under a directory that
// does not exist yet does not stop it either.
func TestDevStopsWhenTerminalCloses(t *testing.T) {
	herdtest.RequireTool(t, "tmux", "tmux")
	dir := herdtest.CopyExample(t)
	server := fmt.Sprintf("herd-devterm-%d", os.Getpid())
	t.Cleanup(func() { _ = exec.Command("tmux", "-L", server, "kill-server").Run() })
	pidfile := filepath.Join(dir, "herd.pid")
	logFile := filepath.Join(dir, "herd.log")
	command := fmt.Sprintf("%s dev app:app --http %s --pidfile %s --log-file %s --log-format json --reload-extra 'templates/**/*.html'",
		herdtest.Binary(t), herdtest.FreeAddr(t), pidfile, logFile)
	tmux := exec.Command("tmux", "-L", server, "new-session", "-d", "-s", "dev", "-c", dir, command)
	if out, err := tmux.CombinedOutput(); err != nil {
		t.Fatalf("tmux: %v: %s", err, out)
	}
	var pid int
	herdtest.Eventually(t, 60*time.Second, "herd dev serving", func() bool {
		b, _ := os.ReadFile(logFile)
		p, _ := os.ReadFile(pidfile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(p)))
		return pid > 0 && strings.Contains(string(b), `"message":"serving"`)
	})
	if b, _ := os.ReadFile(logFile); !strings.Contains(string(b), "does not exist yet: watching for it to appear") {
		t.Fatalf("no warning about templates/:\n%s", b)
	}
	if out, err := exec.Command("tmux", "-L", server, "kill-session", "-t", "dev").CombinedOutput(); err != nil {
		t.Fatalf("tmux kill-session: %v: %s", err, out)
	}
	herdtest.Eventually(t, 30*time.Second, "herd dev gone with its terminal", func() bool { return !herdtest.Alive(pid) })
	if b, _ := os.ReadFile(logFile); !strings.Contains(string(b), "the terminal is gone, stopping") {
		t.Fatalf("herd did not say why it stopped:\n%s", b)
	}
}
