package server

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
	"github.com/herd-server/herd/supervisor/spawn"
)

// gunicornConfFile is a gunicorn.conf.py for envApp: computed values, an import, a hook.
func gunicornConfFile(addr, sock string) string {
	return `import os

print("gunicorn.conf.py is being read")
bind = ["` + addr + `", "unix:` + sock + `"]
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
threads = 2
timeout = 25
graceful_timeout = 5
keepalive = 3
max_requests = 500
raw_env = ["GREETING=from gunicorn.conf.py", "DSN=postgres://u@h/db?a=1,b=2"]
wsgi_app = "envapp:app"
chdir = "site"
accesslog = "-"
worker_class = "sync"

def post_fork(server, worker):
    server.log.info("worker %s forked", worker.pid)
`
}

// TestGunicornConfServes: the gunicorn.conf.py of a gunicorn deployment, found in the
// working directory as gunicorn finds it, serves under herd: workers, both binds, env and
// the app from the file; a flag beats the file; the hook is named in the warning.
func TestGunicornConfServes(t *testing.T) {
	dir := writeApp(t)
	addr := herdtest.FreeAddr(t)
	sock := filepath.Join(dir, "g.sock")
	if err := os.WriteFile(filepath.Join(dir, "gunicorn.conf.py"), []byte(gunicornConfFile(addr, sock)), 0o644); err != nil {
		t.Fatal(err)
	}
	python, err := spawn.ResolvePython("python3") // once: a pyenv shim costs seconds on a loaded machine
	if err != nil {
		t.Fatal(err)
	}
	h := herdtest.Start(t, herdtest.Options{Dir: dir, Listen: addr, Env: []string{"WEB_CONCURRENCY=2", "HERD_PYTHON=" + python}, Args: []string{"--threads", "1"}})
	h.WaitReady(2, 60*time.Second)
	start, _, _ := h.WaitEvent(0, 5*time.Second, herdtest.IsMsg("herd is starting"))
	if start.Int("workers") != 2 || start.Int("threads") != 1 {
		t.Fatalf("start-up line %v: want 2 workers (WEB_CONCURRENCY read by the file) and 1 thread (the flag beats the file)", start)
	}
	status, body := get(t, herdtest.Client(), h.URL+"/")
	if status != 200 || !strings.Contains(body, "GREETING=from gunicorn.conf.py\n") || !strings.Contains(body, "DSN=postgres://u@h/db?a=1,b=2\n") {
		t.Fatalf("got %d %q", status, body)
	}
	unixClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	if status, _ := get(t, unixClient, "http://herd/"); status != 200 {
		t.Fatalf("over the unix: bind: %d", status)
	}
	var warnings []string
	for _, e := range h.Events() {
		if e.Str("level") == "warn" && strings.Contains(e.Msg(), "gunicorn file") {
			warnings = append(warnings, e.Msg())
		}
	}
	want := "gunicorn file gunicorn.conf.py: herd does not take server hooks post_fork (herd's master runs no Python; with preload_app = True (--preload) herd's fork server runs pre_fork, post_fork, post_worker_init)"
	if len(warnings) != 1 || warnings[0] != want {
		t.Fatalf("warnings %q, want [%q]", warnings, want)
	}
}

// TestGunicornConfMatchesGunicorn reads one gunicorn.conf.py and one command line with
// gunicorn itself (--print-config) and with herd check: the settings herd maps get the same
// values, flags beating the file in both.
func TestGunicornConfMatchesGunicorn(t *testing.T) {
	herdtest.RequirePythonModule(t, "/usr/bin/python3", "gunicorn", "gunicorn")
	dir := writeApp(t)
	conf := filepath.Join(dir, "prod.conf.py")
	if err := os.WriteFile(conf, []byte(gunicornConfFile("127.0.0.1:8123", "/run/app.sock")), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-c", conf, "--workers", "4", "--max-requests", "50"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", append(append([]string{"-m", "gunicorn"}, args...), "--print-config")...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "WEB_CONCURRENCY=3")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gunicorn --print-config: %v\n%s", err, out)
	}
	gunicorn := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			gunicorn[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	r := herdtest.Run(t, dir, []string{"WEB_CONCURRENCY=3", "HERD_PYTHON=/usr/bin/python3"}, append([]string{"check"}, args...)...)
	if r.Code != 0 {
		t.Fatalf("herd check: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	herd := map[string]string{}
	for _, line := range strings.Split(r.Stdout, "\n") {
		if f := strings.Fields(line); len(f) >= 2 {
			herd[f[0]] = line
		}
	}
	for _, c := range []struct{ gunicorn, gunicornWant, herd, herdWant string }{
		{"workers", "4", "workers", "4 flag --workers"},
		{"max_requests", "50", "max-requests", "50 flag --max-requests"},
		{"threads", "2", "threads", "2 gunicorn file prod.conf.py (threads)"},
		{"timeout", "25", "timeout", "25s gunicorn file prod.conf.py (timeout)"},
		{"graceful_timeout", "5", "graceful-timeout", "5s gunicorn file"},
		{"keepalive", "3", "keep-alive", "3s gunicorn file"},
		{"bind", "['127.0.0.1:8123', 'unix:/run/app.sock']", "http", "127.0.0.1:8123, unix:/run/app.sock gunicorn file"},
		{"raw_env", "['GREETING=from gunicorn.conf.py', 'DSN=postgres://u@h/db?a=1,b=2']", "env", "GREETING=from gunicorn.conf.py, DSN=postgres://u@h/db?a=1,b=2 gunicorn file"},
		{"wsgi_app", "envapp:app", "app", "envapp:app gunicorn file"},
	} {
		if g := gunicorn[c.gunicorn]; g != c.gunicornWant {
			t.Errorf("gunicorn %s = %q, want %q", c.gunicorn, g, c.gunicornWant)
		}
		if h := squeeze(herd[c.herd]); !strings.HasPrefix(h, c.herd+" "+c.herdWant) {
			t.Errorf("herd check %s: %q, want %q", c.herd, h, c.herdWant)
		}
	}
	// gunicorn's chdir = "site" is relative to where it starts; so is herd's.
	if g, h := gunicorn["chdir"], squeeze(herd["chdir"]); g != filepath.Join(dir, "site") || !strings.HasPrefix(h, "chdir "+filepath.Join(dir, "site")+" ") {
		t.Errorf("chdir: gunicorn %q, herd %q", g, h)
	}
}
