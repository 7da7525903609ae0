package server

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// Under load with the workers SIGKILLed again and again, every request gets its own answer,
// and none runs twice: a request is sent elsewhere only when it provably never reached the
// worker (its connection refused, or reset with the request unread).
func TestRequestsRunOnceUnderKills(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "ran")
	h := herdtest.Start(t, herdtest.Options{Dir: testdataDir(t), Admin: true,
		Env:  []string{"PIPE_LOG=" + logPath},
		Args: []string{"pipeapp:app", "--workers", "2", "--access-log", "off"}})
	h.WaitReady(2, 20*time.Second)

	var (
		next, kills atomic.Int64
		lastPid     atomic.Int64
		mu          sync.Mutex
		answered    = map[string]bool{}
		failed      []string
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// The clients may call t.Errorf: they end before the test does, whichever way it ends.
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad()
	c := herdtest.Client()
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				id := strconv.FormatInt(next.Add(1), 10)
				req, _ := http.NewRequest("POST", h.URL+"/do", strings.NewReader("body of "+id))
				req.Header.Set("X-Id", id)
				resp, err := c.Do(req)
				if err != nil {
					mu.Lock()
					failed = append(failed, id+": "+err.Error())
					mu.Unlock()
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				gotID, pid, _ := strings.Cut(string(b), " ")
				mu.Lock()
				switch {
				case resp.StatusCode == 200 && gotID == id:
					answered[id] = true
					if n, err := strconv.Atoi(pid); err == nil {
						lastPid.Store(int64(n))
					}
				case resp.StatusCode == 200:
					t.Errorf("request %s got the answer of request %s", id, gotID)
				default:
					failed = append(failed, fmt.Sprintf("%s: status %d", id, resp.StatusCode))
				}
				mu.Unlock()
			}
		}()
	}
	answers := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(answered)
	}
	answersSince := func(what string) {
		t.Helper()
		target := answers() + 20
		herdtest.Eventually(t, 30*time.Second, "20 answers "+what, func() bool { return answers() >= target })
	}
	// Eight kills, each once the pool is whole again and has answered 20 requests since the
	// last: the load runs between kills, whatever the pace of the machine.
	from := len(h.Events())
	for range 8 {
		answersSince("since the last kill")
		if pid := int(lastPid.Load()); pid > 0 && syscall.Kill(pid, syscall.SIGKILL) == nil {
			kills.Add(1)
			var ok bool
			if _, from, ok = h.WaitEvent(from, 30*time.Second, herdtest.IsMsg("worker ready")); !ok {
				t.Fatalf("no worker replaced the killed %d", pid)
			}
		}
	}
	answersSince("after the last kill")
	stopLoad()

	raw, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	runs := map[string]int{}
	for _, id := range strings.Fields(string(raw)) {
		runs[id]++
	}
	for id, n := range runs {
		if n > 1 {
			t.Errorf("request %s ran %d times", id, n)
		}
	}
	for id := range answered {
		if runs[id] != 1 {
			t.Errorf("request %s answered 200 but ran %d times", id, runs[id])
		}
	}
	t.Logf("%d requests answered, %d failed, %d kills", len(answered), len(failed), kills.Load())
	// Each kill fails at most what the worker was running.
	if int64(len(failed)) > kills.Load() {
		t.Errorf("%d failures for %d kills: %v", len(failed), kills.Load(), failed[:min(len(failed), 10)])
	}
}

// A client that leaves while its request waits for a worker is not served: when a worker
// frees up, the master looks at the client's socket first (one peek) and drops the request.
func TestClientGoneWhileQueuedIsNotServed(t *testing.T) {
	h := herdtest.Start(t, herdtest.Options{Dir: testAppsDir(t), Args: []string{"fixture:app", "--workers", "1"}})
	h.WaitReady(1, 20*time.Second)
	mark := filepath.Join(t.TempDir(), "reached")
	busy := make(chan error, 1)
	go func() {
		resp, err := herdtest.Client().Get(h.URL + "/slow?t=1")
		if err == nil {
			resp.Body.Close()
		}
		busy <- err
	}()
	h.WaitServing("/slow?t=1", 10*time.Second) // the worker is taken
	c, err := net.Dial("tcp", h.Addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET /slow?t=0&mark=%s HTTP/1.1\r\nHost: x\r\n\r\n", mark)
	h.WaitStatus(10*time.Second, "the second request queued", func(st herdtest.Status) bool { return st.Queue == 1 })
	c.Close() // gone while queued
	if err := <-busy; err != nil {
		t.Fatal(err)
	}
	// A request after it is served (the worker is free again), and the left one was not.
	resp, err := herdtest.Client().Get(h.URL + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := os.Stat(mark); err == nil {
		t.Fatal("the request of a client that left while it waited reached the app")
	}
}
