package main

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// tmux runs tmux on a private server (-L) so that the test touches no other session.
func tmux(t *testing.T, server string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command("tmux", append([]string{"-L", server}, args...)...).CombinedOutput()
	return string(out), err
}

// TestTopInATerminal drives `herd top` in a real terminal (tmux): it shows every worker
// with its pid and the request a worker is busy with, redraws, and quits on q.
func TestTopInATerminal(t *testing.T) {
	herdtest.RequireTool(t, "tmux", "tmux")
	h := herdtest.Start(t, herdtest.Options{Args: []string{"app:app", "--workers", "2", "--threads", "2", "--access-log", "off"}})
	pids := h.WaitReady(2, 60*time.Second)
	start, _, ok := h.WaitEvent(0, 10*time.Second, herdtest.IsMsg("herd is starting"))
	if !ok || start.Str("control_socket") == "" {
		t.Fatalf("no control socket in the start-up line: %v", start)
	}
	slow := make(chan struct{})
	go func() {
		defer close(slow)
		resp, err := herdtest.Client().Get(h.URL + "/sleep?s=4")
		if err == nil {
			resp.Body.Close()
		}
	}()
	defer func() { <-slow }()

	server := fmt.Sprintf("herdtest-top-%d", time.Now().UnixNano())
	t.Cleanup(func() { _, _ = tmux(t, server, "kill-server") })
	command := fmt.Sprintf("%s top --control-socket %s --interval 200ms", herdtest.Binary(t), start.Str("control_socket"))
	if out, err := tmux(t, server, "new-session", "-d", "-s", "top", "-x", "140", "-y", "25", command); err != nil {
		t.Fatalf("tmux new-session: %v: %s", err, out)
	}
	screen := func() string {
		out, err := tmux(t, server, "capture-pane", "-p", "-t", "top")
		if err != nil {
			t.Fatalf("tmux capture-pane: %v: %s", err, out)
		}
		return out
	}
	var last string
	herdtest.EventuallyNil(t, 20*time.Second, "herd top showing both workers and the busy one's request", func() error {
		last = screen()
		if strings.Contains(last, "WORKER") && strings.Contains(last, fmt.Sprint(pids[0])) &&
			strings.Contains(last, fmt.Sprint(pids[1])) && strings.Contains(last, "GET /sleep?s=4") {
			return nil
		}
		return fmt.Errorf("screen:\n%s", last)
	})
	t.Logf("herd top:\n%s", strings.TrimRight(last, "\n"))
	if n := strings.Count(last, "WORKER"); n != 1 {
		t.Fatalf("the header appears %d times: the view is not redrawn in place:\n%s", n, last)
	}

	if out, err := tmux(t, server, "send-keys", "-t", "top", "q"); err != nil {
		t.Fatalf("tmux send-keys: %v: %s", err, out)
	}
	// The command exits, so its session closes.
	if !herdtest.Poll(10*time.Second, func() bool { _, err := tmux(t, server, "has-session", "-t", "top"); return err != nil }) {
		t.Fatalf("herd top still running 10 s after q; screen:\n%s", screen())
	}
}
