package server

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// End-to-end tests of the worker lifecycle (issue 4): reloads, recycling, timeouts, scaling
// and crash loops, with real workers under real client load.

// versionApp answers its version, so a test sees which code serves.
const versionApp = `
def app(environ, start_response):
    body = b"%s"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
`

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitMsg waits for the next event with message msg from index from.
func waitMsg(t *testing.T, h *herdtest.Instance, from int, timeout time.Duration, msg string) (herdtest.Event, int) {
	t.Helper()
	ev, next, ok := h.WaitEvent(from, timeout, herdtest.IsMsg(msg))
	if !ok {
		t.Fatalf("no %q in the log within %s", msg, timeout)
	}
	return ev, next
}

// waitReloadEnd waits for the end of a reload and returns its event.
func waitReloadEnd(t *testing.T, h *herdtest.Instance, from int) (herdtest.Event, int) {
	t.Helper()
	ev, next, ok := h.WaitEvent(from, 60*time.Second, func(e herdtest.Event) bool {
		return e.Msg() == "reload done" || e.Msg() == "reload failed: the new code could not start, the previous workers keep serving"
	})
	if !ok {
		t.Fatal("reload did not end within 60s")
	}
	return ev, next
}

func requireNoFailures(t *testing.T, what string, r herdtest.LoadResult) {
	t.Helper()
	if r.Failed > 0 {
		t.Fatalf("%s: %d of %d requests failed, e.g. %q", what, r.Failed, r.Sent, r.Failures)
	}
	t.Logf("%s: %d requests, none failed", what, r.Sent)
}

// TestReloadUnderLoad: ten SIGHUPs while 16 clients send requests without pause: no
// request fails, and at the end every worker is new.
func TestReloadUnderLoad(t *testing.T) {
	h := herdtest.Start(t, herdtest.Options{Args: []string{"app:app", "--workers", "2", "--access-log", "off"}})
	first := h.WaitReady(2, 20*time.Second)
	load := herdtest.StartLoad(h.URL+"/pid", 16, nil)
	from := len(h.Events())
	for range 10 {
		before := load.Sent()
		h.Signal(syscall.SIGHUP)
		var ev herdtest.Event
		ev, from = waitReloadEnd(t, h, from)
		if ev.Msg() != "reload done" {
			t.Fatalf("reload failed: %v", ev)
		}
		// Each reload happens under load, not in a pause of it.
		herdtest.Eventually(t, 30*time.Second, "20 requests during the reload", func() bool { return load.Sent() >= before+20 })
	}
	requireNoFailures(t, "10 reloads", load.Stop())

	// The last generation's workers serve, and the first generation's are gone.
	var last []int
	for _, e := range h.Events() {
		if e.Msg() == "worker ready" && e.Int("generation") == 11 {
			last = append(last, e.Int("pid"))
		}
	}
	if len(last) != 2 {
		t.Fatalf("generation 11 has %d ready workers, want 2", len(last))
	}
	c := herdtest.Client()
	for range 10 {
		status, body := get(t, c, h.URL+"/pid")
		var pid int
		if _, err := fmt.Sscanf(body, "%d", &pid); status != 200 || err != nil || !slices.Contains(last, pid) {
			t.Fatalf("after the reloads %d %q, want a pid of %v", status, body, last)
		}
	}
	for _, pid := range first {
		waitGone(t, pid)
	}
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	herdtest.Eventually(t, 10*time.Second, fmt.Sprintf("old worker %d gone", pid), func() bool { return !herdtest.Alive(pid) })
}

// TestReloadIntoBrokenCode: a reload into a SyntaxError fails without a failed request,
// the old code keeps serving, the traceback is in the log once; once the file is fixed, the
// next reload serves the new code.
func TestReloadIntoBrokenCode(t *testing.T) {
	dir := t.TempDir()
	appFile := filepath.Join(dir, "versioned.py")
	writeFile(t, appFile, fmt.Sprintf(versionApp, "v1"))
	h := herdtest.Start(t, herdtest.Options{Dir: dir, Args: []string{"versioned:app", "--workers", "2", "--access-log", "off"},
		Env: []string{"PYTHONDONTWRITEBYTECODE=1"}})
	h.WaitReady(2, 20*time.Second)

	var want atomic.Value // the bodies accepted now
	want.Store("v1")
	load := herdtest.StartLoad(h.URL+"/", 8, func(status int, body string) error {
		if status != 200 || !strings.Contains(want.Load().(string), body) {
			return fmt.Errorf("%d %q, want one of %q", status, body, want.Load())
		}
		return nil
	})

	writeFile(t, appFile, "def app(environ, start_response:\n    pass\n")
	from := len(h.Events())
	h.Signal(syscall.SIGHUP)
	ev, next := waitReloadEnd(t, h, from)
	if ev.Msg() == "reload done" || !strings.Contains(ev.Str("error"), "SyntaxError") {
		t.Fatalf("reload into a SyntaxError: %v", ev)
	}
	tracebacks := 0
	for _, e := range h.Events()[from:] {
		if strings.HasPrefix(e.Msg(), "the app could not be imported:\n") {
			tracebacks++
			if !strings.Contains(e.Msg(), "versioned.py") || !strings.Contains(e.Msg(), "SyntaxError") {
				t.Fatalf("traceback does not name the file and the error: %q", e.Msg())
			}
		}
	}
	if tracebacks != 1 {
		t.Fatalf("the traceback was logged %d times, want once", tracebacks)
	}
	c := herdtest.Client()
	if status, body := get(t, c, h.URL+"/"); status != 200 || body != "v1" {
		t.Fatalf("after the failed reload: %d %q, want the old code's v1", status, body)
	}

	want.Store("v1 v2")
	writeFile(t, appFile, fmt.Sprintf(versionApp, "v2"))
	h.Signal(syscall.SIGHUP)
	if ev, _ := waitReloadEnd(t, h, next); ev.Msg() != "reload done" {
		t.Fatalf("reload into fixed code: %v", ev)
	}
	for range 10 { // requests sent after the reload ended reach the new code only
		if status, body := get(t, c, h.URL+"/"); status != 200 || body != "v2" {
			t.Fatalf("after the fixed reload: %d %q, want v2", status, body)
		}
	}
	requireNoFailures(t, "broken then fixed reload", load.Stop())
}

// TestChainReload: --chain-reload replaces the workers one by one: never more than one
// process beyond --workers, and no failed request.
func TestChainReload(t *testing.T) {
	h := herdtest.Start(t, herdtest.Options{Args: []string{"app:app", "--workers", "3", "--chain-reload", "--access-log", "off"}})
	h.WaitReady(3, 20*time.Second)
	load := herdtest.StartLoad(h.URL+"/pid", 4, nil)
	var most atomic.Int64
	stopWatch := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if n := int64(len(herdtest.ChildPids(h.Cmd.Process.Pid))); n > most.Load() {
				most.Store(n)
			}
		}
	}()
	from := len(h.Events())
	h.Signal(syscall.SIGHUP)
	ev, _ := waitReloadEnd(t, h, from)
	close(stopWatch)
	<-watched
	if ev.Msg() != "reload done" {
		t.Fatalf("chain reload: %v", ev)
	}
	requireNoFailures(t, "chain reload", load.Stop())
	if m := most.Load(); m > 4 {
		t.Fatalf("%d worker processes at once during a chain reload of 3, want at most 4", m)
	}
}

// TestTimeoutKillsStuckWorker: --timeout 2 and a request that sleeps 10 s: a 504 after about
// 2 s, the worker's stack dump in the log names the sleeping function, a new worker
// replaces it, and the requests to the other worker all succeed.
func TestTimeoutKillsStuckWorker(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "hangs.py"), `
import time

def sleepy_handler(seconds):
    time.sleep(seconds)

def app(environ, start_response):
    if environ["PATH_INFO"] == "/hang":
        sleepy_handler(10)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
`)
	h := herdtest.Start(t, herdtest.Options{Dir: dir, Args: []string{"hangs:app", "--workers", "2", "--timeout", "2s", "--access-log", "off"}})
	pids := h.WaitReady(2, 20*time.Second)
	load := herdtest.StartLoad(h.URL+"/", 4, nil)

	from := len(h.Events())
	start := time.Now()
	status, _ := get(t, herdtest.Client(), h.URL+"/hang")
	took := time.Since(start)
	if status != 504 {
		t.Fatalf("stuck request: status %d, want 504", status)
	}
	if took < 1900*time.Millisecond || took > 5*time.Second {
		t.Fatalf("504 after %s, want about 2s", took)
	}
	_, _, ok := h.WaitEvent(from, 10*time.Second, func(e herdtest.Event) bool {
		return e.Str("component") == "worker" && strings.Contains(e.Msg(), "in sleepy_handler")
	})
	if !ok {
		t.Fatal("no stack dump naming sleepy_handler in the log")
	}
	ev, _, ok := h.WaitEvent(from, 10*time.Second, func(e herdtest.Event) bool {
		return e.Msg() == "worker ready" && !slices.Contains(pids, e.Int("pid"))
	})
	if !ok {
		t.Fatal("no replacement worker became ready")
	}
	t.Logf("504 after %s; replacement worker %d ready", took, ev.Int("pid"))
	requireNoFailures(t, "other requests during the timeout", load.Stop())
}

// TestMaxRequestsRecyclesUnderLoad: --max-requests 50 under load replaces workers without a
// failed request.
func TestMaxRequestsRecyclesUnderLoad(t *testing.T) {
	h := herdtest.Start(t, herdtest.Options{Args: []string{"app:app", "--workers", "2", "--max-requests", "50", "--max-requests-jitter", "10", "--access-log", "off"}})
	first := h.WaitReady(2, 20*time.Second)
	recycledPids := make(map[int]bool)
	load := herdtest.StartLoad(h.URL+"/pid", 8, nil)
	recycled := 0
	from := 0
	for recycled < 4 {
		ev, next, ok := h.WaitEvent(from, 60*time.Second, func(e herdtest.Event) bool {
			return e.Msg() == "worker stopped" && e.Str("cause") == "max_requests"
		})
		if !ok {
			t.Fatalf("only %d workers recycled for max-requests within 60s", recycled)
		}
		recycledPids[ev.Int("pid")] = true
		recycled++
		from = next
	}
	requireNoFailures(t, "max-requests recycling", load.Stop())
	for _, pid := range first {
		if !recycledPids[pid] {
			// Both first workers reach their limit before four recycles are over.
			t.Fatalf("first worker %d was not recycled; recycled: %v", pid, recycledPids)
		}
	}
}

// TestScaleWithTTINAndTTOU: TTIN adds a worker, TTOU removes one, never below one.
func TestScaleWithTTINAndTTOU(t *testing.T) {
	h := herdtest.Start(t, herdtest.Options{Args: []string{"app:app", "--workers", "2"}})
	h.WaitReady(2, 20*time.Second)
	master := h.Cmd.Process.Pid
	waitWorkers := func(n int) {
		t.Helper()
		herdtest.EventuallyNil(t, 20*time.Second, fmt.Sprintf("%d worker processes", n), func() error {
			if kids := herdtest.ChildPids(master); len(kids) != n {
				return fmt.Errorf("workers %v", kids)
			}
			return nil
		})
	}
	from := len(h.Events())
	h.Signal(syscall.SIGTTIN)
	_, from = waitMsg(t, h, from, 20*time.Second, "worker ready")
	waitWorkers(3)
	// One at a time: the kernel merges a signal sent again before it was handled.
	for _, want := range []int{2, 1, 1} { // the third one finds the floor
		h.Signal(syscall.SIGTTOU)
		var ev herdtest.Event
		ev, from = waitMsg(t, h, from, 20*time.Second, "scaling workers")
		if ev.Int("to") != want {
			t.Fatalf("TTOU scaled to %d workers, want %d", ev.Int("to"), want)
		}
	}
	waitWorkers(1)
	if status, _ := get(t, herdtest.Client(), h.URL+"/"); status != 200 {
		t.Fatalf("with one worker left: status %d", status)
	}
}

// TestCrashLoopBacksOff: a worker that dies at boot over and over is restarted after
// growing delays, reported as a crash loop, and the master does not spin the CPU.
func TestCrashLoopBacksOff(t *testing.T) {
	dir := t.TempDir()
	// Imports once; every later boot fails, as after a bad deploy.
	writeFile(t, filepath.Join(dir, "once.py"), `
import os
marker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "booted")
if os.path.exists(marker):
    raise RuntimeError("this app boots only once")
open(marker, "w").close()

def app(environ, start_response):
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]
`)
	h := herdtest.Start(t, herdtest.Options{Dir: dir, Args: []string{"once:app", "--workers", "1"}})
	pid := h.WaitReady(1, 20*time.Second)[0]
	master := h.Cmd.Process.Pid
	cpuBefore := cpuTime(t, master)
	from := len(h.Events())
	start := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var delays []time.Duration
	for {
		ev, next := waitMsg(t, h, from, 30*time.Second, "worker died")
		from = next
		delays = append(delays, time.Duration(ev.Int("restart_in_ms"))*time.Millisecond)
		if ev["crash_loop"] == true {
			break
		}
	}
	elapsed := time.Since(start)
	cpu := cpuTime(t, master) - cpuBefore
	t.Logf("%d deaths in %s, restart delays %v, master CPU %s", len(delays), elapsed, delays, cpu)
	for i := 1; i < len(delays); i++ {
		if delays[i] <= delays[i-1] && delays[i] < 10*time.Second {
			t.Fatalf("restart delays do not grow: %v", delays)
		}
	}
	if len(delays) > 6 {
		t.Fatalf("%d deaths before the crash loop was reported", len(delays))
	}
	if cpu > elapsed/2 {
		t.Fatalf("master used %s of CPU in %s of crash loop: it spins", cpu, elapsed)
	}
	if !h.Running() {
		t.Fatal("the master gave up; it should keep retrying with backoff")
	}
}

// cpuTime is a process's user+system CPU time, from /proc.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	var utime, stime int64
	if _, err := fmt.Sscan(fields[11], &utime); err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Sscan(fields[12], &stime); err != nil {
		t.Fatal(err)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// TestUpgradeWithUSR2UnderLoad: USR2 starts a new master on the same listening sockets; the
// old one drains and exits 0 once the new one serves, and no request fails meanwhile.
func TestUpgradeWithUSR2UnderLoad(t *testing.T) {
	h := herdtest.Start(t, herdtest.Options{Args: []string{"app:app", "--workers", "2", "--access-log", "off"}})
	h.WaitReady(2, 20*time.Second)
	load := herdtest.StartLoad(h.URL+"/pid", 8, nil)
	from := len(h.Events())
	newPid := h.Upgrade(30 * time.Second)
	if code := h.Wait(60 * time.Second); code != 0 {
		t.Fatalf("old master exited with %d, want 0 after draining", code)
	}
	// The new master alone serves now, under the same load.
	sent := load.Sent()
	herdtest.Eventually(t, 30*time.Second, "100 requests to the new master alone", func() bool { return load.Sent() >= sent+100 })
	requireNoFailures(t, "USR2 upgrade", load.Stop())
	_, body := get(t, herdtest.Client(), h.URL+"/pid")
	var pid int
	if _, err := fmt.Sscanf(body, "%d", &pid); err != nil || !slices.Contains(herdtest.ChildPids(newPid), pid) {
		t.Fatalf("served by pid %q, want a worker of the new master %d (workers %v)", body, newPid, herdtest.ChildPids(newPid))
	}
	// The new master stops cleanly too.
	if err := syscall.Kill(newPid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitMsg(t, h, from, 30*time.Second, "herd stopped")
}

// TestTermUnderLoadFinishesAcceptedRequests: on TERM every request already accepted gets
// its answer; afterwards new connections are refused (not failed half-way).
func TestTermUnderLoadFinishesAcceptedRequests(t *testing.T) {
	h := herdtest.Start(t, herdtest.Options{Args: []string{"app:app", "--workers", "2", "--access-log", "off"}})
	h.WaitReady(2, 20*time.Second)
	var answered, refused, broken atomic.Int64
	done := make(chan struct{})
	clients := 8
	for range clients {
		go func() {
			defer func() { done <- struct{}{} }()
			c := herdtest.Client()
			for {
				status, err := getStatus(c, h.URL+"/sleep?s=0.2")
				switch {
				case err == nil && status == 200:
					answered.Add(1)
				case err != nil && strings.Contains(err.Error(), "connection refused"):
					refused.Add(1)
					return
				default:
					broken.Add(1)
					t.Errorf("request during TERM: status %d, %v", status, err)
					return
				}
			}
		}()
	}
	// Not Eventually: the clients, which may call t.Errorf, end only once herd stops.
	if !herdtest.Poll(30*time.Second, func() bool { return answered.Load() >= 16 }) {
		t.Errorf("only %d requests answered within 30 s; stopping anyway", answered.Load())
	}
	h.Signal(syscall.SIGTERM)
	if code := h.Wait(30 * time.Second); code != 0 {
		t.Fatalf("exit %d after TERM", code)
	}
	for range clients {
		<-done
	}
	t.Logf("%d answered, %d refused after the stop, %d broken", answered.Load(), refused.Load(), broken.Load())
}

func getStatus(c *http.Client, url string) (int, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err != nil {
		return resp.StatusCode, err
	}
	return resp.StatusCode, nil
}

// TestUpgradeKeepsUnixSockets: after a USR2 upgrade, the Unix socket files of the HTTP and
// uwsgi listeners still exist (the old master must not remove them as it exits), each still
// speaks its own protocol (the hand-over names, which hold colons, reach the new master
// intact), and the new master removes the files when it stops.
func TestUpgradeKeepsUnixSockets(t *testing.T) {
	dir := t.TempDir()
	httpSock, uwsgiSock := filepath.Join(dir, "http.sock"), filepath.Join(dir, "uwsgi.sock")
	h := herdtest.Start(t, herdtest.Options{Args: []string{"app:app", "--workers", "1", "--access-log", "off",
		"--http", "unix:" + httpSock, "--uwsgi-socket", "unix:" + uwsgiSock}})
	h.WaitReady(1, 20*time.Second)
	newPid := h.Upgrade(30 * time.Second)
	if code := h.Wait(60 * time.Second); code != 0 {
		t.Fatalf("old master exited with %d, want 0 after draining", code)
	}
	unixClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", httpSock)
		},
	}}
	if code, body := get(t, unixClient, "http://herd/"); code != http.StatusOK {
		t.Fatalf("HTTP over %s after the upgrade: %d %q", httpSock, code, body)
	}
	answer := uwsgiRequest(t, "unix:"+uwsgiSock, "REQUEST_METHOD", "GET", "PATH_INFO", "/", "SERVER_PROTOCOL", "HTTP/1.1",
		"SERVER_NAME", "herd", "SERVER_PORT", "80", "REQUEST_URI", "/")
	if !strings.HasPrefix(answer, "HTTP/1.1 200") {
		t.Fatalf("uwsgi over %s after the upgrade answered %.80q, want a 200", uwsgiSock, answer)
	}
	if err := syscall.Kill(newPid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitGone(t, newPid)
	for _, path := range []string{httpSock, uwsgiSock} {
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("%s after the last master stopped: %v, want it removed", path, err)
		}
	}
}
