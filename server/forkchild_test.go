package server

import (
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// TestWorkerDeathWithForkedChild: an app forks a child that keeps every descriptor of its
// worker (the link, the listening socket, the control channel, the output pipes). When the
// worker is SIGKILLed, its death is known at once all the same (from the kernel, not from
// its pipes closing), the requests go elsewhere, and a request sent 50 ms after the kill is
// answered within 2 s. Before, the death was logged 3 s late and such a request sat in the
// child's listen backlog with no answer.
func TestWorkerDeathWithForkedChild(t *testing.T) {
	h := herdtest.Start(t, herdtest.Options{Dir: testdataDir(t), Args: []string{"forkapp:app", "--workers", "2"}})
	pids := h.WaitReady(2, 30*time.Second)
	c := herdtest.Client()

	// Fork a child from one worker (the first to answer), and remember it to kill it at
	// the end.
	status, body := get(t, c, h.URL+"/fork")
	child, err := strconv.Atoi(body)
	if status != http.StatusOK || err != nil {
		t.Fatalf("/fork: %d %q", status, body)
	}
	t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL) })
	parent := 0
	for _, pid := range pids {
		if ppid, ok := herdtest.ParentOf(child); ok && ppid == pid {
			parent = pid
		}
	}
	if parent == 0 {
		t.Fatalf("the forked child %d is not a child of a worker %v", child, pids)
	}

	from := len(h.Events())
	killed := time.Now()
	if err := syscall.Kill(parent, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The request goes out 50 ms after the kill, as the attack in issue 21 did.
	time.Sleep(50 * time.Millisecond) // time is the subject: the gap between kill and request
	start := time.Now()
	c2 := &http.Client{Timeout: 5 * time.Second}
	resp, err := c2.Get(h.URL + "/")
	if err != nil {
		t.Fatalf("request 50 ms after the kill: %v", err)
	}
	resp.Body.Close()
	if took := time.Since(start); resp.StatusCode != http.StatusOK || took > 2*time.Second {
		t.Fatalf("request 50 ms after the kill: %d after %v, want 200 within 2 s", resp.StatusCode, took)
	}
	ev, _, ok := h.WaitEvent(from, 5*time.Second, func(e herdtest.Event) bool {
		return e.Msg() == "worker died" && e.Int("pid") == parent
	})
	if !ok {
		t.Fatal("the worker's death was not logged")
	}
	if at, err := time.Parse(time.RFC3339Nano, ev.Str("time")); err != nil || at.Sub(killed) > time.Second {
		t.Fatalf("the death was logged at %q, %v after the kill: want it known at once", ev.Str("time"), at.Sub(killed))
	}
	// Every later request is answered, by the survivor or the replacement, never queued
	// at the dead worker's socket.
	for range 20 {
		if status, body := get(t, c, h.URL+"/"); status != http.StatusOK || !strings.HasPrefix(body, "ok ") {
			t.Fatalf("after the kill: %d %q", status, body)
		}
	}
}
