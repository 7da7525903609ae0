package server

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
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

func get(t testing.TB, c *http.Client, url string) (int, string) {
	t.Helper()
	return herdtest.Get(t, c, url)
}

func TestServeExampleApp(t *testing.T) {
	h := herdtest.Start(t, herdtest.Options{Args: []string{"app:app", "--workers", "2"}})
	h.WaitReady(2, 20*time.Second)
	c := herdtest.Client()

	t.Run("GET", func(t *testing.T) {
		status, body := get(t, c, h.URL+"/")
		if status != 200 || body != "Hello from herd!\n" {
			t.Fatalf("got %d %q", status, body)
		}
	})

	t.Run("POST 10 MiB echoed intact", func(t *testing.T) {
		payload := make([]byte, 10<<20)
		if _, err := rand.Read(payload); err != nil {
			t.Fatal(err)
		}
		resp, err := c.Post(h.URL+"/echo", "application/octet-stream", bytes.NewReader(payload))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || sha256.Sum256(got) != sha256.Sum256(payload) {
			t.Fatalf("status %d, %d bytes back, checksum differs: %v", resp.StatusCode, len(got), sha256.Sum256(got) != sha256.Sum256(payload))
		}
	})

	t.Run("chunked upload", func(t *testing.T) {
		// An io.Reader of unknown length makes the client send Transfer-Encoding: chunked.
		payload := strings.Repeat("chunky ", 100000)
		req, _ := http.NewRequest("POST", h.URL+"/echo", io.MultiReader(strings.NewReader(payload)))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(got) != payload {
			t.Fatalf("status %d, %d bytes back, want %d", resp.StatusCode, len(got), len(payload))
		}
	})

	t.Run("generator streamed in parts", func(t *testing.T) {
		resp, err := c.Get(h.URL + "/stream?n=4&gap=0.3")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.ContentLength != -1 {
			t.Fatalf("streamed response has Content-Length %d", resp.ContentLength)
		}
		r := bufio.NewReader(resp.Body)
		var arrivals []time.Time
		var lines []string
		for {
			line, err := r.ReadString('\n')
			if line != "" {
				arrivals = append(arrivals, time.Now())
				lines = append(lines, strings.TrimSpace(line))
			}
			if err != nil {
				break
			}
		}
		if strings.Join(lines, ",") != "part 0,part 1,part 2,part 3" {
			t.Fatalf("parts: %q", lines)
		}
		// Had the master buffered the whole body, every part would arrive at once;
		// streamed, the first comes about 0.9 s (three gaps) before the last.
		if spread := arrivals[3].Sub(arrivals[0]); spread < 600*time.Millisecond {
			t.Fatalf("parts arrived within %s of each other: the response was not streamed", spread)
		}
	})

	t.Run("app 404", func(t *testing.T) {
		if status, body := get(t, c, h.URL+"/no/such/page"); status != 404 || body != "Not Found\n" {
			t.Fatalf("got %d %q", status, body)
		}
	})

	t.Run("exception is a 500, next request is a 200", func(t *testing.T) {
		for range 3 {
			if status, _ := get(t, c, h.URL+"/boom"); status != 500 {
				t.Fatalf("/boom: %d, want 500", status)
			}
			if status, _ := get(t, c, h.URL+"/"); status != 200 {
				t.Fatalf("after /boom: %d, want 200", status)
			}
		}
	})

	t.Run("HEAD has no body", func(t *testing.T) {
		resp, err := c.Head(h.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ContentLength != 17 {
			t.Fatalf("HEAD: %d, Content-Length %d", resp.StatusCode, resp.ContentLength)
		}
	})
}

// TestKillWorkerUnderLoad: a SIGKILLed worker costs only the requests it held, and a new
// worker (a new pid) is ready within a second.
func TestKillWorkerUnderLoad(t *testing.T) {
	h := herdtest.Start(t, herdtest.Options{Args: []string{"app:app", "--workers", "2", "--access-log", "off"}})
	pids := h.WaitReady(2, 20*time.Second)
	victim := pids[0]
	c := herdtest.Client()

	var sent, failed atomic.Int64
	var failuresMu sync.Mutex
	var failures []string
	stop := make(chan struct{})
	var stopOnce sync.Once
	var wg sync.WaitGroup
	stopLoad := func() {
		stopOnce.Do(func() { close(stop) })
		wg.Wait()
	}
	// A failing check must not leave the clients hammering a dead server under the next tests.
	t.Cleanup(stopLoad)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				sent.Add(1)
				// Every other request takes 20 ms, so the victim is likely to be caught
				// holding one, as a real worker would be.
				url := h.URL + "/pid"
				if (g+i)%2 == 0 {
					url = h.URL + "/sleep?s=0.02"
				}
				resp, err := c.Get(url)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						continue
					}
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
				failed.Add(1)
				failuresMu.Lock()
				failures = append(failures, err.Error())
				failuresMu.Unlock()
			}
		}()
	}

	// The load runs before the kill: 100 requests (a second or so).
	herdtest.Eventually(t, 30*time.Second, "100 requests before the kill", func() bool { return sent.Load() >= 100 })
	mark := len(h.Events())
	killedAt := time.Now()
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ev, _, ok := h.WaitEvent(mark, 5*time.Second, func(e herdtest.Event) bool {
		return e.Msg() == "worker ready" && e.Int("pid") != victim && e.Int("pid") != pids[1]
	})
	if !ok {
		t.Fatal("no replacement worker became ready")
	}
	if d := time.Since(killedAt); d > time.Second+200*time.Millisecond {
		// WaitEvent returns when the line is read; the log's own timestamps decide.
		t.Logf("replacement seen after %s", d)
	}
	readyAt, _ := time.Parse(time.RFC3339Nano, ev.Str("time"))
	if gap := readyAt.Sub(killedAt); gap > time.Second {
		t.Fatalf("replacement worker (pid %d) ready %s after the kill, want < 1s", ev.Int("pid"), gap)
	}
	// And after it, on the replacement: 200 more.
	after := sent.Load() + 200
	herdtest.Eventually(t, 30*time.Second, "200 requests after the replacement", func() bool { return sent.Load() >= after })
	stopLoad()

	// Only requests in flight on the killed worker may fail: with 8 clients and one slot
	// per worker, that is at most one.
	t.Logf("sent %d requests, %d failed: %v", sent.Load(), failed.Load(), failures)
	if failed.Load() > 1 {
		t.Fatalf("%d requests failed, at most 1 (the one the killed worker held) may: %v", failed.Load(), failures)
	}
	for _, f := range failures {
		if !strings.Contains(f, "502") {
			t.Fatalf("a failed request got %q, want a 502", f)
		}
	}
}

func TestKillMasterLeavesNoWorker(t *testing.T) {
	h := herdtest.Start(t, herdtest.Options{Args: []string{"app:app", "--workers", "3"}})
	pids := h.WaitReady(3, 20*time.Second)
	if err := h.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h.Wait(5 * time.Second)
	herdtest.EventuallyNil(t, 2*time.Second, "every worker gone after the master was killed", func() error {
		for _, pid := range pids {
			if herdtest.Alive(pid) {
				return fmt.Errorf("worker %d alive", pid)
			}
		}
		return nil
	})
}

func TestTermStopsCleanly(t *testing.T) {
	h := herdtest.Start(t, herdtest.Options{Args: []string{"app:app", "--workers", "2"}})
	pids := h.WaitReady(2, 20*time.Second)
	runDir := h.RunDir()
	if _, err := os.Stat(filepath.Join(runDir, "worker-1.sock")); err != nil {
		t.Fatalf("worker socket not where expected: %v", err)
	}
	// A request in flight when TERM arrives must still be answered.
	c := herdtest.Client()
	slow := make(chan string, 1)
	go func() {
		resp, err := c.Get(h.URL + "/sleep?s=0.5")
		if err != nil {
			slow <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		slow <- strconv.Itoa(resp.StatusCode) + " " + string(b)
	}()
	h.WaitServing("/sleep?s=0.5", 10*time.Second)
	if err := h.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := h.Wait(10 * time.Second); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0", code)
	}
	if got := <-slow; got != "200 slept\n" {
		t.Fatalf("request in flight during SIGTERM: %q", got)
	}
	for _, pid := range pids {
		if herdtest.Alive(pid) {
			t.Fatalf("worker %d alive after the master exited", pid)
		}
	}
	if _, err := os.Stat(runDir); !os.IsNotExist(err) {
		t.Fatalf("runtime directory %s left behind (err %v)", runDir, err)
	}
}

func TestInterruptStopsCleanly(t *testing.T) {
	h := herdtest.Start(t, herdtest.Options{Args: []string{"app:app", "--workers", "2"}})
	pids := h.WaitReady(2, 20*time.Second)
	runDir := h.RunDir()
	if err := h.Cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := h.Wait(10 * time.Second); code != 0 {
		t.Fatalf("exit status %d after SIGINT, want 0", code)
	}
	for _, pid := range pids {
		if herdtest.Alive(pid) {
			t.Fatalf("worker %d alive after the master exited", pid)
		}
	}
	if _, err := os.Stat(runDir); !os.IsNotExist(err) {
		t.Fatalf("runtime directory %s left behind", runDir)
	}
}

func TestAppThatCannotImportExitsWithTraceback(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "broken.py"), []byte("import os\nraise ValueError('no config for you')\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := herdtest.Start(t, herdtest.Options{Dir: dir, Args: []string{"broken:app", "--workers", "2"}})
	if code := h.Wait(20 * time.Second); code != exitAppBoot {
		t.Fatalf("exit status %d, want %d", code, exitAppBoot)
	}
	out := h.Output()
	if !strings.Contains(out, "ValueError: no config for you") || !strings.Contains(out, `broken.py", line 2`) {
		t.Fatalf("output does not show the traceback:\n%s", out)
	}
}

func TestMissingModuleExitsWithTraceback(t *testing.T) {
	h := herdtest.Start(t, herdtest.Options{Args: []string{"nosuchmodule:app", "--workers", "1"}})
	if code := h.Wait(20 * time.Second); code != exitAppBoot {
		t.Fatalf("exit status %d, want %d", code, exitAppBoot)
	}
	if out := h.Output(); !strings.Contains(out, "No module named 'nosuchmodule'") {
		t.Fatalf("output does not name the missing module:\n%s", out)
	}
}
