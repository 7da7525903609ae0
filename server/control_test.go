package server

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herd-server/herd/admin"
	"github.com/herd-server/herd/internal/herdtest"
)

// isolatedRegistry gives a test its own master registry, so that the herds other tests (and
// other people) run on this machine do not count.
func isolatedRegistry(t *testing.T) []string {
	return []string{"XDG_RUNTIME_DIR=" + t.TempDir()}
}

func statusJSON(t *testing.T, env []string, args ...string) admin.Stats {
	t.Helper()
	r := herdtest.Run(t, "", env, append([]string{"status", "--json"}, args...)...)
	if r.Code != 0 {
		t.Fatalf("herd status: exit %d: %s", r.Code, r.Stderr)
	}
	var st admin.Stats
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
		t.Fatalf("herd status --json printed %q: %v", r.Stdout, err)
	}
	return st
}

// TestStatusWhileSlowRequest: `herd status` against a running herd shows the busy worker
// with the slow request and its age, the idle one ready, both as table and JSON.
func TestStatusWhileSlowRequest(t *testing.T) {
	env := isolatedRegistry(t)
	h := herdtest.Start(t, herdtest.Options{Env: env, Args: []string{"app:app", "--workers", "2"}})
	h.WaitReady(2, 20*time.Second)
	start, _, _ := h.WaitEvent(0, 5*time.Second, herdtest.IsMsg("herd is starting"))
	sock := start.Str("control_socket")
	if sock == "" || !strings.HasPrefix(sock, h.RunDir()) {
		t.Fatalf("start-up line names control socket %q, want one in the runtime dir %s", sock, h.RunDir())
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("control socket %s: %v, mode %v; want a socket with mode 0600", sock, err, fi.Mode())
	}

	slow := make(chan string, 1)
	go func() {
		resp, err := herdtest.Client().Get(h.URL + "/sleep?s=8")
		if err != nil {
			slow <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- string(b)
	}()

	// No flag: the registry (isolated here) holds exactly this master.
	var busy, ready *admin.WorkerStats
	herdtest.Eventually(t, 10*time.Second, "a worker shown busy with the slow request", func() bool {
		st := statusJSON(t, env)
		if st.Pid != h.Cmd.Process.Pid || len(st.Workers) != 2 {
			t.Fatalf("status of pid %d with %d workers, want pid %d with 2", st.Pid, len(st.Workers), h.Cmd.Process.Pid)
		}
		busy, ready = nil, nil
		for i := range st.Workers {
			w := &st.Workers[i]
			switch {
			case w.State == "busy" && len(w.Current) == 1 && w.Current[0].URI == "/sleep?s=8":
				busy = w
			case w.State == "ready" && len(w.Current) == 0:
				ready = w
			}
		}
		return busy != nil
	})
	if ready == nil || busy.Current[0].Method != "GET" || busy.RSS <= 0 || busy.Generation != 1 {
		t.Fatalf("busy %+v, ready %+v", busy, ready)
	}
	// A second look once the master says the request is half a second old.
	h.WaitStatus(8*time.Second, "the slow request 500 ms old", func(st herdtest.Status) bool {
		_, c := st.Serving("/sleep?s=8")
		return c != nil && c.AgeMs >= 500
	})
	r := herdtest.Run(t, "", env, "status", "--control-socket", sock)
	if r.Code != 0 {
		t.Fatalf("herd status: exit %d: %s", r.Code, r.Stderr)
	}
	t.Logf("herd status:\n%s", r.Stdout)
	var busyLine string
	for _, line := range strings.Split(r.Stdout, "\n") {
		if strings.Contains(line, "GET /sleep?s=8") {
			busyLine = line
		}
	}
	fields := strings.Fields(busyLine)
	if len(fields) != 10 || fields[2] != "busy" || fields[5] != "1/1" {
		t.Fatalf("no busy row with the request in:\n%s", r.Stdout)
	}
	if age, err := time.ParseDuration(fields[9]); err != nil || age < 500*time.Millisecond || age > 8*time.Second {
		t.Fatalf("age of the slow request shown as %q", fields[9])
	}
	if got := <-slow; got != "slept\n" {
		t.Fatalf("slow request: %q", got)
	}
	st := statusJSON(t, env, "--pid", "0", "--control-socket", sock)
	var served uint64
	for _, w := range st.Workers {
		if w.State != "ready" {
			t.Fatalf("after the request, worker %d is %s", w.ID, w.State)
		}
		served += w.Requests
	}
	if served != 1 {
		t.Fatalf("workers served %d requests, want 1", served)
	}
}

// TestStopThroughControlSocket: `herd stop --pidfile` finds the master, which drains and
// exits 0, removing its socket and registry entry.
func TestStopThroughControlSocket(t *testing.T) {
	env := isolatedRegistry(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "herd.ctl")
	h := herdtest.Start(t, herdtest.Options{Env: env, Args: []string{"app:app", "--workers", "1", "--control-socket", sock}})
	h.WaitReady(1, 20*time.Second)
	pidfile := filepath.Join(dir, "herd.pid")
	if err := os.WriteFile(pidfile, []byte(strconv.Itoa(h.Cmd.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	registry := filepath.Join(strings.TrimPrefix(env[0], "XDG_RUNTIME_DIR="), "herd", strconv.Itoa(h.Cmd.Process.Pid)+".json")
	if _, err := os.Stat(registry); err != nil {
		t.Fatalf("registry entry: %v", err)
	}
	r := herdtest.Run(t, "", env, "stop", "--pidfile", pidfile)
	if r.Code != 0 || r.Stdout != "stopping\n" {
		t.Fatalf("herd stop: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
	}
	if code := h.Wait(15 * time.Second); code != 0 {
		t.Fatalf("master exited %d after herd stop, want 0", code)
	}
	for _, path := range []string{sock, registry} {
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Fatalf("%s left behind (err %v)", path, err)
		}
	}
	// Nothing runs now: the commands say so, and how to point them at a master.
	r = herdtest.Run(t, "", env, "status")
	if r.Code != 1 || !strings.Contains(r.Stderr, "no running herd master found in") {
		t.Fatalf("herd status with no master: exit %d, %q", r.Code, r.Stderr)
	}
}

// TestCheck: herd check prints the effective config with sources, imports the app in a
// throwaway worker, and says by its exit status whether serve would start.
func TestCheck(t *testing.T) {
	t.Run("ok", func(t *testing.T) {
		r := herdtest.Run(t, "", []string{"HERD_THREADS=3"}, "check", "app:app", "-w", "2")
		if r.Code != 0 || !strings.Contains(r.Stdout, "ok: app:app imported by") {
			t.Fatalf("exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
		}
		rows := map[string]string{}
		for _, line := range strings.Split(r.Stdout, "\n") {
			if f := strings.Fields(line); len(f) >= 3 {
				rows[f[0]] = strings.Join(f[1:], " ")
			}
		}
		for key, want := range map[string]string{"workers": "2 flag --workers", "threads": "3 environment HERD_THREADS",
			"app": "app:app argument", "queue-size": "1024 default"} {
			if rows[key] != want {
				t.Errorf("%s: %q, want %q in:\n%s", key, rows[key], want, r.Stdout)
			}
		}
	})
	t.Run("app raises at import", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "broken.py"), []byte("raise RuntimeError('no database')\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		r := herdtest.Run(t, dir, nil, "check", "broken:app")
		if r.Code != exitAppBoot || !strings.Contains(r.Stderr, "RuntimeError: no database") ||
			!strings.Contains(r.Stderr, `herd: check failed: the app "broken:app" could not be imported`) {
			t.Fatalf("exit %d, want %d with the traceback\n%s\n%s", r.Code, exitAppBoot, r.Stdout, r.Stderr)
		}
	})
	t.Run("bad config", func(t *testing.T) {
		r := herdtest.Run(t, "", nil, "check", "app:app", "--threads", "0")
		if r.Code != 1 || !strings.Contains(r.Stderr, "threads: 0: must be 1 or more") {
			t.Fatalf("exit %d\n%s", r.Code, r.Stderr)
		}
		if strings.Contains(r.Stdout, "imported") {
			t.Fatalf("the app was imported despite a bad config:\n%s", r.Stdout)
		}
	})
}

// TestReloadThroughControlSocket: herd reload returns once the new generation took over;
// status then shows generation 2 with new pids. A reload into code that does not import
// fails with the error, and the old generation keeps serving.
func TestReloadThroughControlSocket(t *testing.T) {
	env := isolatedRegistry(t)
	dir := herdtest.CopyExample(t)
	h := herdtest.Start(t, herdtest.Options{Dir: dir, Env: env, Args: []string{"app:app", "--workers", "2"}})
	old := h.WaitReady(2, 20*time.Second)
	r := herdtest.Run(t, dir, env, "reload")
	if r.Code != 0 || r.Stdout != "reloaded\n" {
		t.Fatalf("herd reload: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
	}
	st := statusJSON(t, env)
	for _, w := range st.Workers {
		if w.Generation != 2 || w.Pid == old[0] || w.Pid == old[1] {
			t.Fatalf("after reload: %+v, want generation 2 with new pids (old %v)", st.Workers, old)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "app.py"), []byte("def app(:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = herdtest.Run(t, dir, env, "reload")
	if r.Code != 1 || !strings.Contains(r.Stderr, "SyntaxError") {
		t.Fatalf("reload into broken code: exit %d, %q", r.Code, r.Stderr)
	}
	if status, _ := get(t, herdtest.Client(), h.URL+"/"); status != 200 {
		t.Fatalf("after a failed reload: %d", status)
	}
	// The failure shows in the status too, as the status of the master, not only in its log.
	st = statusJSON(t, env)
	if r := st.LastReload; r == nil || r.OK || !strings.Contains(r.Error, "SyntaxError") {
		t.Fatalf("status after a failed reload: last_reload %+v, want a failure naming the SyntaxError", st.LastReload)
	}
	if r := herdtest.Run(t, dir, env, "status"); !strings.Contains(r.Stdout, "last reload FAILED") {
		t.Fatalf("herd status does not show the failed reload:\n%s", r.Stdout)
	}
}
