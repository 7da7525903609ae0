package chaos

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// Faults the chaos suite found, each pinned by a small deterministic test.

// TestTimedOutWorkerGetsNoMoreRequests: one worker, --timeout 1s, SIGSTOPped (hung: the
// SIGABRT herd sends first stays pending, only the SIGKILL 2 s later ends it); a request
// that hangs on it and a second one queued behind. When the first overruns (504), the slot it
// frees must not go to the queued request, which would hang and get 504 as well: the queued
// one waits for the replacement and gets 200. The access line of the 504 names the worker
// that had it.
func TestTimedOutWorkerGetsNoMoreRequests(t *testing.T) {
	h := startHerd(t, 1, "--timeout", "1s")
	hung := h.WaitReady(1, time.Second)[0]
	if err := syscall.Kill(hung, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(hung, syscall.SIGKILL) })
	c := herdtest.Client()
	first := make(chan int, 1)
	go func() {
		status, _ := getStatus(c, h.URL+"/hello/1")
		first <- status
	}()
	waitInFlight(t, h, 1)
	status, err := getStatus(c, h.URL+"/hello/2")
	if s := <-first; s != 504 {
		t.Fatalf("the request on the hung worker got %d, want 504", s)
	}
	if status != 200 || err != nil {
		t.Fatalf("the request queued behind the hung one: %d %v, want 200 from the replacement", status, err)
	}
	if id := accessWorkers(h)["/hello/1"]; id != 1 {
		t.Fatalf("the access line of the timed-out request names worker %d, want 1", id)
	}
	if pid := workerPids(h)[accessWorkers(h)["/hello/2"]]; pid == hung {
		t.Fatalf("the queued request was served by the hung worker %d", pid)
	}
}

// TestYoungWorkerThatServedRestartsAtOnce: a worker that served requests is healthy, however
// young: when it is killed, its replacement starts at once. Before, every death within 5 s
// of being ready doubled the wait (100, 200, 400 ms ...), so that killing young workers one
// after another left the pool short for seconds.
func TestYoungWorkerThatServedRestartsAtOnce(t *testing.T) {
	h := startHerd(t, 1)
	pid := h.WaitReady(1, time.Second)[0]
	c := herdtest.Client()
	from := 0
	for round := range 2 { // round 0 is a first death; round 1 kills a young worker that served
		if status, _ := herdtest.Get(t, c, h.URL+"/hello/"+strconv.Itoa(round)); status != 200 {
			t.Fatalf("round %d: status %d", round, status)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		died, next, ok := h.WaitEvent(from, 20*time.Second, func(e herdtest.Event) bool {
			return e.Msg() == "worker died" && e.Int("pid") == pid
		})
		if !ok {
			t.Fatalf("round %d: no death of %d in the log", round, pid)
		}
		if died.Int("restart_in_ms") != 0 || died.Int("deaths_in_a_row") != 1 {
			t.Fatalf("round %d: a worker that served was killed: restart in %d ms, deaths in a row %d; want 0 and 1",
				round, died.Int("restart_in_ms"), died.Int("deaths_in_a_row"))
		}
		ready, next, ok := h.WaitEvent(next, 60*time.Second, herdtest.IsMsg("worker ready"))
		if !ok {
			t.Fatalf("round %d: no replacement ready", round)
		}
		pid, from = ready.Int("pid"), next
	}
}

// waitInFlight waits until /stats shows n requests in flight on the workers.
func waitInFlight(t *testing.T, h *herdtest.Instance, n int) {
	t.Helper()
	herdtest.EventuallyNil(t, 30*time.Second, fmt.Sprintf("%d requests in flight on the workers", n), func() error {
		st, err := stats(h)
		if err != nil {
			return err
		}
		inflight := 0
		for _, w := range st.Workers {
			inflight += w.InFlight
		}
		if inflight < n {
			return fmt.Errorf("%d in flight", inflight)
		}
		return nil
	})
}

// getStatus fetches url and returns its status, the body read whole (0 and the error when
// no answer came).
func getStatus(c *http.Client, url string) (int, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.ReadAll(resp.Body)
	return resp.StatusCode, err
}
