package server

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// TestDescriptorBudgetUnderFlood: issue 21's second attack. Under `ulimit -n 600`, clients
// that hold what a connection can hold: 60 that never read a spooled answer (a socket and
// the spool opened twice each; 8 MiB, more than the kernel's socket buffers take off the
// spool), then 200 slow posters whose bodies spill to files (a socket and a file each).
// herd stays below its limit throughout, refuses what it cannot hold (a body that cannot
// have a file gets 503) and says so in its log, and a worker killed twice meanwhile is
// replaced each time: the descriptors a worker needs are kept for it. (Before, the budget
// counted 2 per connection: accept, spooling and then pipe2 for a new worker failed with
// EMFILE, leaving no worker.)
func TestDescriptorBudgetUnderFlood(t *testing.T) {
	const nofile = 600
	h := herdtest.Start(t, herdtest.Options{Dir: testAppsDir(t), Env: []string{"HERD_HOSTILE_COUNT=/dev/null"},
		Wrap: []string{"/bin/sh", "-c", fmt.Sprintf(`ulimit -n %d && exec "$@"`, nofile), "sh"},
		Args: []string{"hostileapp:app", "--workers", "2", "--access-log", "off", "--body-buffer", "4KiB",
			"--send-timeout", "10s"}})
	h.WaitReady(2, 60*time.Second)
	pid := h.Cmd.Process.Pid
	var peak atomic.Int64
	stopSampling := sampleFDs(pid, &peak)
	defer stopSampling()

	from := len(h.Events())
	for range 60 {
		c := dialStalled(t, "tcp", h.Addr)
		fmt.Fprintf(c, "GET /big?n=%d HTTP/1.1\r\nHost: a\r\n\r\n", 8<<20)
		readStatus(t, c)
	}
	var refused atomic.Int64
	var posters sync.WaitGroup
	var conns []net.Conn
	for range 200 {
		c := dialStalled(t, "tcp", h.Addr)
		conns = append(conns, c)
		fmt.Fprintf(c, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n%s", strings.Repeat("p", 8<<10))
		posters.Add(1)
		go func() {
			defer posters.Done()
			b := make([]byte, 12) // until the answer, or the close below
			if n, _ := io.ReadFull(c, b); n == 12 && string(b) == "HTTP/1.1 503" {
				refused.Add(1)
			}
		}()
	}
	for kill := range 2 {
		pids := workerPids(t, h)
		if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		ev, next, ok := h.WaitEvent(from, 30*time.Second, herdtest.IsMsg("worker ready"))
		if !ok {
			t.Fatalf("no worker replaced the one killed (%d of 2) under the flood", kill+1)
		}
		t.Logf("kill %d: worker %d replaced by pid %d", kill+1, pids[0], ev.Int("pid"))
		from = next
	}
	herdtest.Eventually(t, 20*time.Second, "a slow poster refused", func() bool { return refused.Load() > 0 })
	stopSampling()
	for _, c := range conns { // the posters herd took stay until --body-timeout: end them
		c.Close()
	}
	posters.Wait()
	if p := peak.Load(); p >= nofile {
		t.Errorf("the master held %d descriptors, at its limit of %d", p, nofile)
	}
	if _, _, ok := h.WaitEvent(0, 5*time.Second, func(e herdtest.Event) bool {
		return strings.Contains(e.Msg(), "no room for its body") && strings.Contains(e.Str("error"), "temporary file")
	}); !ok {
		t.Error("the log does not say that bodies were refused for want of a temporary file")
	}
	t.Logf("master descriptors: peak %d of %d; %d of 200 slow posters refused with 503", peak.Load(), nofile, refused.Load())
}

// sampleFDs records the most descriptors pid holds, every 20 ms, until the returned stop.
func sampleFDs(pid int, peak *atomic.Int64) (stop func()) {
	done := make(chan struct{})
	var once sync.Once
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil && int64(len(entries)) > peak.Load() {
				peak.Store(int64(len(entries)))
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() {
		once.Do(func() { close(done) })
		<-finished
	}
}

// workerPids lists the master's live worker processes.
func workerPids(t *testing.T, h *herdtest.Instance) []int {
	t.Helper()
	var pids []int
	herdtest.Eventually(t, 20*time.Second, "a live worker", func() bool {
		pids = herdtest.ChildPids(h.Cmd.Process.Pid)
		return len(pids) > 0
	})
	return pids
}
