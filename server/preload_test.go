package server

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
	"github.com/herd-server/herd/supervisor/spawn"
)

// End-to-end tests of --preload (issue 19): a fork server imports the app once and forks
// the workers; the master supervises both. The app is scripts/testapps/preloadapp.py.

// preloadDir copies the preload fixture app (and its gunicorn config) into a fresh
// directory, with version.txt saying version.
func preloadDir(t *testing.T, version string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"preloadapp.py", "preload.conf.py"} {
		b, err := os.ReadFile(filepath.Join(testAppsDir(t), name))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, name), string(b))
	}
	writeFile(t, filepath.Join(dir, "version.txt"), version)
	return dir
}

// startPreload starts herd --preload with n workers of the fixture app in dir (args
// added), and waits for them.
func startPreload(t *testing.T, dir string, n int, args ...string) *herdtest.Instance {
	t.Helper()
	h := herdtest.Start(t, herdtest.Options{Dir: dir, Admin: true, Env: []string{"PYTHONDONTWRITEBYTECODE=1"},
		Args: append([]string{"preloadapp:app", "--preload", "--access-log", "off", "--workers", strconv.Itoa(n)}, args...)})
	h.WaitReady(n, 30*time.Second)
	return h
}

// stats reads /stats of the admin server.
func adminStats(t *testing.T, h *herdtest.Instance) map[string]any {
	t.Helper()
	_, body := get(t, herdtest.Client(), h.AdminURL+"/stats")
	var st map[string]any
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/stats: %v: %s", err, body)
	}
	return st
}

// forkServers is /stats' fork_servers.servers.
func forkServers(st map[string]any) []map[string]any {
	fs, _ := st["fork_servers"].(map[string]any)
	list, _ := fs["servers"].([]any)
	var out []map[string]any
	for _, s := range list {
		out = append(out, s.(map[string]any))
	}
	return out
}

// pidsServing asks / until every one of n workers has answered, and returns their pids.
func pidsServing(t *testing.T, c *http.Client, url string, n int) []int {
	t.Helper()
	var pids []int
	herdtest.Eventually(t, 20*time.Second, fmt.Sprintf("%d workers answering", n), func() bool {
		_, body := get(t, c, url+"/pid")
		pid, _ := strconv.Atoi(body)
		if pid > 0 && !slices.Contains(pids, pid) {
			pids = append(pids, pid)
		}
		return len(pids) >= n
	})
	return pids
}

// TestPreloadForkSafety: under --preload with a gunicorn.conf.py, the fork hooks run where
// gunicorn runs them, each worker draws its own random numbers, what the app opened at
// import works in every worker, and logging does not hang although a thread of the fork
// server logged without pause while it forked. /stats, herd status and /metrics show the
// fork server and the forked workers.
func TestPreloadForkSafety(t *testing.T) {
	dir := preloadDir(t, "v1")
	h := startPreload(t, dir, 3, "-c", "preload.conf.py")
	c := herdtest.Client()
	pids := pidsServing(t, c, h.URL, 3)
	master := h.Cmd.Process.Pid
	for _, pid := range pids {
		if ppid, _ := herdtest.ParentOf(pid); ppid == master {
			t.Errorf("worker %d is the master's child: not forked by the fork server", pid)
		}
	}
	randoms := map[string]bool{}
	for range 30 {
		for _, route := range []string{"/file", "/socket", "/log", "/hooks", "/random"} {
			status, body := get(t, c, h.URL+route)
			switch {
			case status != 200:
				t.Fatalf("%s: %d %q", route, status, body)
			case route == "/file" && !strings.Contains(body, "WSGI app for --preload"):
				t.Fatalf("/file: %q", body)
			case route == "/socket" && !strings.HasPrefix(body, "ping "):
				t.Fatalf("/socket: %q", body)
			case route == "/hooks":
				for _, want := range []string{"pre_fork:True:None", "post_fork:True:True", "post_worker_init:True"} {
					if !strings.Contains(body, want) {
						t.Fatalf("/hooks %q lacks %q", body, want)
					}
				}
			case route == "/random":
				randoms[body] = true
			}
		}
	}
	if len(randoms) < 30 {
		t.Errorf("%d distinct random numbers in 30 draws across 3 workers: random state shared", len(randoms))
	}
	if n := h.Count(func(e herdtest.Event) bool { return strings.Contains(e.Msg(), "post_fork of worker") }); n < 3 {
		t.Errorf("post_fork's log line seen %d times, want 3", n)
	}

	st := adminStats(t, h)
	servers := forkServers(st)
	if len(servers) != 1 || servers[0]["state"] != "ready" || servers[0]["generation"] != 1.0 || servers[0]["children"] != 3.0 {
		t.Fatalf("/stats fork_servers: %v", st["fork_servers"])
	}
	for _, w := range st["workers"].([]any) {
		if w.(map[string]any)["forked"] != true {
			t.Fatalf("/stats worker not forked: %v", w)
		}
	}
	status := herdtest.Run(t, dir, nil, "status", "--control-socket", h.ControlSocket())
	if !strings.Contains(status.Stdout, "FORK SERVER") || !strings.Contains(status.Stdout, strconv.Itoa(int(servers[0]["pid"].(float64)))) {
		t.Fatalf("herd status:\n%s%s", status.Stdout, status.Stderr)
	}
	_, metrics := get(t, c, h.AdminURL+"/metrics")
	for _, want := range []string{`herd_fork_servers{state="ready"} 1`, `herd_fork_server_rss_bytes{generation="1"}`, "herd_fork_server_starts_total 1"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestPreloadRespawnIsFast: a worker SIGKILLed is replaced, forked from the fork server,
// and its replacement serves within 100 ms (median of 5).
func TestPreloadRespawnIsFast(t *testing.T) {
	dir := preloadDir(t, "v1")
	h := startPreload(t, dir, 1)
	c := herdtest.Client()
	var took []time.Duration
	for range 5 {
		_, body := get(t, c, h.URL+"/pid")
		old, _ := strconv.Atoi(body)
		killed := time.Now()
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		herdtest.EventuallyNil(t, 10*time.Second, "a new worker serving", func() error {
			resp, err := c.Get(h.URL + "/pid")
			if err != nil {
				return err
			}
			b := make([]byte, 32)
			n, _ := resp.Body.Read(b)
			resp.Body.Close()
			if pid, _ := strconv.Atoi(string(b[:n])); resp.StatusCode != 200 || pid == old || pid == 0 {
				return fmt.Errorf("%d %q", resp.StatusCode, b[:n])
			}
			return nil
		})
		took = append(took, time.Since(killed))
	}
	median := medianOf(took)
	t.Logf("killed worker to its replacement serving: median %s over 5 (min %s, max %s)",
		median.Round(time.Millisecond), slices.Min(took).Round(time.Millisecond), slices.Max(took).Round(time.Millisecond))
	if median > 100*time.Millisecond {
		t.Errorf("median %s from SIGKILL to the replacement serving, want under 100 ms", median)
	}
}

// TestPreloadForkServerDies: the fork server SIGKILLed under load: no request fails (its
// workers serve on), its death is logged and counted, a new one is started, and a worker
// killed afterwards is forked from the new one.
func TestPreloadForkServerDies(t *testing.T) {
	dir := preloadDir(t, "v1")
	h := startPreload(t, dir, 2, "--log-level", "debug")
	first := forkServers(adminStats(t, h))
	if len(first) != 1 {
		t.Fatalf("fork servers: %v", first)
	}
	oldServer := int(first[0]["pid"].(float64))
	load := herdtest.StartLoad(h.URL+"/pid", 8, nil)
	from := len(h.Events())
	if err := syscall.Kill(oldServer, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitMsg(t, h, from, 10*time.Second, spawn.MsgForkServerDied)
	_, next := waitMsg(t, h, from, 30*time.Second, spawn.MsgForkServerReady)
	requireNoFailures(t, "the fork server's death", load.Stop())

	st := adminStats(t, h)
	servers := forkServers(st)
	if len(servers) != 1 || int(servers[0]["pid"].(float64)) == oldServer || st["fork_servers"].(map[string]any)["deaths"] != 1.0 {
		t.Fatalf("after the death: %v", st["fork_servers"])
	}
	newServer := int(servers[0]["pid"].(float64))
	c := herdtest.Client()
	victim := pidsServing(t, c, h.URL, 1)[0]
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ev, _ := waitMsg(t, h, next, 20*time.Second, "worker ready")
	if ppid, _ := herdtest.ParentOf(ev.Int("pid")); ppid != newServer {
		t.Fatalf("the replacement %d has parent %d, want the new fork server %d", ev.Int("pid"), ppid, newServer)
	}
	// The workers of the dead fork server, orphans now, are still known: their exits too.
	stopCleanly(t, h)
}

// TestPreloadReloadUnderLoad: HUP, herd reload and a touched --touch-reload file each
// start a new fork server that imports the new code; the new generation is forked from it
// and the old one drains, with no failed request; an import error keeps the old
// generation serving; the old fork servers go.
func TestPreloadReloadUnderLoad(t *testing.T) {
	dir := preloadDir(t, "v1")
	touch := filepath.Join(dir, "touch")
	writeFile(t, touch, "")
	h := startPreload(t, dir, 2, "--touch-reload", touch)
	want := "v1"
	load := herdtest.StartLoad(h.URL+"/version", 16, func(status int, body string) error {
		if status != 200 || !strings.HasPrefix(body, "v") {
			return fmt.Errorf("%d %q", status, body)
		}
		return nil
	})
	from := len(h.Events())
	triggers := []func(){
		func() { h.Signal(syscall.SIGHUP) },
		func() { herdtest.Run(t, dir, nil, "reload", "--control-socket", h.ControlSocket()) },
		func() { now := time.Now().Add(time.Second); _ = os.Chtimes(touch, now, now) },
	}
	c := herdtest.Client()
	for i, trigger := range triggers {
		want = fmt.Sprintf("v%d", i+2)
		writeFile(t, filepath.Join(dir, "version.txt"), want)
		before := load.Sent()
		trigger()
		var ev herdtest.Event
		ev, from = waitReloadEnd(t, h, from)
		if ev.Msg() != "reload done" {
			t.Fatalf("reload %d failed: %v", i+1, ev)
		}
		if _, body := get(t, c, h.URL+"/version"); body != want {
			t.Fatalf("after reload %d: %q, want %q", i+1, body, want)
		}
		herdtest.Eventually(t, 10*time.Second, "more requests under load", func() bool { return load.Sent() > before+20 })
	}
	// Broken code: the new fork server's import fails, the old generation serves on.
	writeFile(t, filepath.Join(dir, "preloadapp.py"), "import nosuchmodule_preload\n")
	h.Signal(syscall.SIGHUP)
	ev, _ := waitReloadEnd(t, h, from)
	if !strings.HasPrefix(ev.Msg(), "reload failed") {
		t.Fatalf("reload into broken code: %v", ev)
	}
	requireNoFailures(t, "3 reloads and a failed one under --preload", load.Stop())
	if _, body := get(t, c, h.URL+"/version"); body != want {
		t.Fatalf("after the failed reload: %q, want %q", body, want)
	}
	// Only the last good generation's fork server is left.
	herdtest.EventuallyNil(t, 20*time.Second, "one fork server left", func() error {
		if servers := forkServers(adminStats(t, h)); len(servers) != 1 || servers[0]["generation"] != 4.0 {
			return fmt.Errorf("%v", servers)
		}
		return nil
	})
	if n := h.Count(herdtest.IsMsg(spawn.MsgForkServerReady)); n != 4 {
		t.Errorf("%d fork servers ready, want 4 (one per good generation)", n)
	}
}

// TestPreloadTimeoutDumpsStacks: a forked worker past --timeout gets SIGABRT: its
// faulthandler writes its stack to the log, the client gets 504, and it is replaced.
func TestPreloadTimeoutDumpsStacks(t *testing.T) {
	dir := preloadDir(t, "v1")
	h := startPreload(t, dir, 1, "--timeout", "1s")
	c := herdtest.Client()
	if status, _ := get(t, c, h.URL+"/sleep"); status != 504 {
		t.Fatalf("/sleep: %d, want 504", status)
	}
	if _, _, ok := h.WaitEvent(0, 10*time.Second, func(e herdtest.Event) bool {
		return strings.Contains(e.Msg(), "preloadapp.py") && strings.Contains(e.Msg(), "in app")
	}); !ok {
		t.Fatal("no stack of the timed-out worker in the log")
	}
	h.WaitReady(2, 20*time.Second)
	if status, _ := get(t, c, h.URL+"/pid"); status != 200 {
		t.Fatalf("after the timeout: %d", status)
	}
}

// TestPreloadWithoutPidfd: with no pidfd from the fork server (Linux before 5.3), a worker's
// death is learnt from the fork server's report, and the replacement serves.
func TestPreloadWithoutPidfd(t *testing.T) {
	dir := preloadDir(t, "v1")
	h := startPreload(t, dir, 1, "-e", "HERD_FORK_SERVER_PIDFD=0")
	c := herdtest.Client()
	old := pidsServing(t, c, h.URL, 1)[0]
	from := len(h.Events())
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ev, _ := waitMsg(t, h, from, 10*time.Second, "worker died")
	if ev.Str("exit") != "killed by SIGKILL (killed)" {
		t.Errorf("exit %q, want the fork server's report of SIGKILL", ev.Str("exit"))
	}
	h.WaitReady(2, 20*time.Second)
	if pid := pidsServing(t, c, h.URL, 1)[0]; pid == old {
		t.Fatal("the killed worker still answers")
	}
}

// smapsPss is a process's proportional set size from /proc/PID/smaps_rollup, in bytes.
func smapsPss(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Pss:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no Pss in smaps_rollup of %d", pid)
}

// treePss is the PSS of a process and all its descendants.
func treePss(t testing.TB, root int) (int64, int) {
	t.Helper()
	total, n := int64(0), 0
	for queue := []int{root}; len(queue) > 0; queue = queue[1:] {
		pss, err := smapsPss(queue[0])
		if err != nil {
			t.Fatal(err)
		}
		total += pss
		n++
		queue = append(queue, herdtest.ChildPids(queue[0])...)
	}
	return total, n
}

// TestPreloadMemory: 4 workers of an app that allocates 150 MiB of Python objects at
// import, after traffic and a full collection in every worker: the total PSS of herd's
// processes (master, fork server, workers) with --preload is at most 45% of it without.
// It prints both (docs/lifecycle.md has the figures).
func TestPreloadMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts 9 processes of 150 MiB")
	}
	total := map[bool]int64{}
	for _, preload := range []bool{false, true} {
		dir := preloadDir(t, "v1")
		args := []string{"preloadapp:app", "--workers", "4", "--access-log", "off", "--boot-timeout", "120s"}
		if preload {
			args = append(args, "--preload")
		}
		h := herdtest.Start(t, herdtest.Options{Dir: dir, Args: args, Env: []string{"PRELOAD_MB=150"}})
		h.WaitReady(4, 120*time.Second)
		c := herdtest.Client()
		for range 200 { // traffic, to every worker
			for _, route := range []string{"/pid", "/log", "/random"} {
				if status, _ := get(t, c, h.URL+route); status != 200 {
					t.Fatalf("%s: %d", route, status)
				}
			}
		}
		collected := map[string]bool{} // a full collection in each worker
		herdtest.Eventually(t, 60*time.Second, "a gc.collect() in each of the 4 workers", func() bool {
			_, pid := get(t, c, h.URL+"/gc")
			collected[pid] = true
			return len(collected) >= 4
		})
		pss, procs := treePss(t, h.Cmd.Process.Pid)
		total[preload] = pss
		t.Logf("--preload=%v: %d processes, total PSS %.1f MiB", preload, procs, float64(pss)/(1<<20))
		stopCleanly(t, h)
	}
	ratio := float64(total[true]) / float64(total[false])
	t.Logf("PSS with --preload: %.0f%% of without", 100*ratio)
	if ratio > 0.45 {
		t.Errorf("PSS with --preload is %.0f%% of without, want at most 45%%", 100*ratio)
	}
}

// TestPreloadPython38: under Python 3.8, which has no os.pidfd_open, the fork server opens
// each worker's pidfd with the system call itself; a killed worker is replaced.
func TestPreloadPython38(t *testing.T) {
	pythons, _ := filepath.Glob("/root/.pyenv/versions/3.8.*/bin/python3")
	if len(pythons) == 0 {
		t.Skip("no Python 3.8 here (pyenv's)")
	}
	dir := preloadDir(t, "v1")
	h := startPreload(t, dir, 1, "--python", pythons[0], "--log-level", "debug")
	ev, _, ok := h.WaitEvent(0, 10*time.Second, herdtest.IsMsg(spawn.MsgForked))
	if !ok || !ev.Bool("pidfd") {
		t.Fatalf("forked event %v, want one with a pidfd", ev)
	}
	c := herdtest.Client()
	old := pidsServing(t, c, h.URL, 1)[0]
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h.WaitReady(2, 20*time.Second)
	if pid := pidsServing(t, c, h.URL, 1)[0]; pid == old {
		t.Fatal("the killed worker still answers")
	}
}

// TestPreloadFileWatcher: --preload with --reload: a saved module is imported by a new fork
// server, whose workers serve it; the old fork server goes.
func TestPreloadFileWatcher(t *testing.T) {
	dir := preloadDir(t, "v1")
	h := startPreload(t, dir, 2, "--reload")
	c := herdtest.Client()
	if _, body := get(t, c, h.URL+"/version"); body != "v1" {
		t.Fatalf("before: %q", body)
	}
	app := filepath.Join(dir, "preloadapp.py")
	src, err := os.ReadFile(app)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, app, string(src)+"\nVERSION = 'saved'\n")
	waitForBody(t, c, h.URL+"/version", "saved", 30*time.Second, false)
	herdtest.EventuallyNil(t, 20*time.Second, "the first fork server gone", func() error {
		if servers := forkServers(adminStats(t, h)); len(servers) != 1 || servers[0]["generation"] != 2.0 {
			return fmt.Errorf("%v", servers)
		}
		return nil
	})
}
