package server

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// envApp answers with the worker's pid and the variables the test set for it.
const envApp = `import os

def app(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    names = ['GREETING', 'DSN', 'SITE']
    body = 'pid=%d\n' % os.getpid() + ''.join('%s=%s\n' % (n, os.environ.get(n, '')) for n in names)
    return [body.encode()]
`

func writeApp(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "site"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "site", "envapp.py"), []byte(envApp), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// peersINI is a uWSGI ini in the style of PEERS.md's reference command, for envApp in
// site/ next to it: the same file runs under uwsgi and under herd.
func peersINI(addr string) string {
	return `[uwsgi]
plugin = python3
master = true
processes = 2
http-socket = ` + addr + `
http-socket = %dapp.sock
chdir = %d
wsgi-file = site/envapp.py
callable = app
env = GREETING=hello, world
env = SITE=%n
disable-logging = true
need-app = true
die-on-term = true
buffer-size = 32768
harakiri = 30
offload-threads = 1
`
}

// TestPeersINIUnderUWSGI runs the same ini under uWSGI itself: it is a real uWSGI file, and
// uWSGI expands it (%d, %n, env with a comma) to what herd's test expects.
func TestPeersINIUnderUWSGI(t *testing.T) {
	uwsgi := herdtest.RequireTool(t, "uwsgi", "uwsgi")
	if _, err := os.Stat("/usr/lib/uwsgi/plugins/python3_plugin.so"); err != nil {
		herdtest.RequireTool(t, "uwsgi-python3-plugin-missing", "uwsgi-plugin-python3")
	}
	dir := writeApp(t)
	addr := herdtest.FreeAddr(t)
	ini := filepath.Join(dir, "uwsgi.ini")
	if err := os.WriteFile(ini, []byte(peersINI(addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(uwsgi, "--ini", ini)
	cmd.Dir = dir
	// A file, not a pipe: Wait need not wait for every copy of the descriptor to close.
	out, err := os.Create(filepath.Join(dir, "uwsgi.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its workers can be killed with it
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// SIGINT is uWSGI's fast stop, but started from a test its master often waits its
		// 60 s "mercy" for the workers anyway (the cause is not ours to chase): the group it
		// leads is killed after 3 s. What this test proves was proven above.
		_ = cmd.Process.Signal(syscall.SIGINT)
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		select {
		case <-exited:
		case <-time.After(3 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(out.Name())
			t.Logf("uwsgi output:\n%s", b)
		}
	})
	// No keep-alive: an idle connection would hold a uWSGI worker, and its master waits
	// for that worker at stop.
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var status int
	var body string
	herdtest.EventuallyNil(t, 20*time.Second, "uwsgi serving", func() error {
		resp, err := c.Get("http://" + addr + "/")
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		status, body = resp.StatusCode, string(b)
		return nil
	})
	if status != 200 || !strings.Contains(body, "GREETING=hello, world\n") || !strings.Contains(body, "SITE=uwsgi\n") {
		t.Fatalf("uwsgi answered %d %q", status, body)
	}
}

// TestUWSGIIniServes runs a uWSGI ini in the style of PEERS.md's reference command under
// herd: the app, worker count, listeners and environment all come from the file.
func TestUWSGIIniServes(t *testing.T) {
	dir := writeApp(t)
	addr := herdtest.FreeAddr(t)
	ini := filepath.Join(dir, "uwsgi.ini")
	text := peersINI(addr)
	if err := os.WriteFile(ini, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	// herd check shows what the file set, line by line, before anything serves.
	r := herdtest.Run(t, dir, nil, "check", "--ini", ini)
	if r.Code != 0 {
		t.Fatalf("herd check --ini: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	for _, want := range []string{
		"workers 2 uWSGI file uwsgi.ini line 4 (processes)",
		"app envapp:app uWSGI file uwsgi.ini line 8 (wsgi-file)",
		"access-log off uWSGI file uwsgi.ini line 12 (disable-logging)",
	} {
		if !strings.Contains(squeeze(r.Stdout), want) {
			t.Errorf("herd check --ini does not show %q:\n%s", want, r.Stdout)
		}
	}

	h := herdtest.Start(t, herdtest.Options{Dir: dir, Listen: addr, Args: []string{"--ini", ini}})
	workers := h.WaitReady(2, 20*time.Second)
	// No lazy-apps in the file: as uWSGI does, the app is imported once, in the fork server
	// (the master's child), and the workers are forked from it.
	servers := herdtest.ChildPids(h.Cmd.Process.Pid)
	if len(servers) != 1 || !slices.Equal(slices.Sorted(slices.Values(herdtest.ChildPids(servers[0]))), slices.Sorted(slices.Values(workers))) {
		t.Fatalf("master's children %v, workers %v: want one fork server, parent of the 2 workers", servers, workers)
	}

	c := herdtest.Client()
	status, body := get(t, c, h.URL+"/")
	if status != 200 || !strings.Contains(body, "GREETING=hello, world\n") || !strings.Contains(body, "SITE=uwsgi\n") {
		t.Fatalf("got %d %q", status, body)
	}
	// The second http-socket, a path, is a Unix socket next to the file (%d).
	unixClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", filepath.Join(dir, "app.sock"))
		},
	}}
	if status, body := get(t, unixClient, "http://herd/"); status != 200 || !strings.Contains(body, "pid=") {
		t.Fatalf("over the Unix socket: %d %q", status, body)
	}

	start, _, ok := h.WaitEvent(0, 5*time.Second, herdtest.IsMsg("herd is starting"))
	if !ok || start.Int("workers") != 2 {
		t.Fatalf("start-up line: %v", start)
	}
	// Every option herd does not take is named, in one warning.
	var warnings []string
	for _, e := range h.Events() {
		if e.Str("level") == "warn" && strings.Contains(e.Msg(), "uWSGI file") {
			warnings = append(warnings, e.Msg())
		}
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "offload-threads") {
		t.Fatalf("want one warning naming offload-threads, got %q", warnings)
	}
	// disable-logging: no access lines.
	for _, e := range h.Events() {
		if e.Str("component") == "access" {
			t.Fatalf("access line logged despite disable-logging: %v", e)
		}
	}
}

// TestGunicornCommandLineServes runs a gunicorn command line under herd.
func TestGunicornCommandLineServes(t *testing.T) {
	dir := writeApp(t)
	addr := herdtest.FreeAddr(t)
	sock := filepath.Join(dir, "g.sock")
	h := herdtest.Start(t, herdtest.Options{Dir: dir, Listen: addr, Args: []string{
		"-w", "3", "-b", addr, "--bind", "unix:" + sock, "--threads", "2", "--chdir", filepath.Join(dir, "site"),
		"-e", "DSN=postgres://u@h/db?a=1,b=2", "--env", "GREETING=hi", "--graceful-timeout", "5",
		"--keep-alive", "2", "--access-logfile", filepath.Join(dir, "access.log"), "envapp:app",
	}})
	h.WaitReady(3, 20*time.Second)
	c := herdtest.Client()
	status, body := get(t, c, h.URL+"/")
	if status != 200 || !strings.Contains(body, "DSN=postgres://u@h/db?a=1,b=2\n") || !strings.Contains(body, "GREETING=hi\n") {
		t.Fatalf("got %d %q", status, body)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("unix listener %s: %v", sock, err)
	}
	start, _, _ := h.WaitEvent(0, 5*time.Second, herdtest.IsMsg("herd is starting"))
	if start.Int("workers") != 3 || start.Int("threads") != 2 {
		t.Fatalf("start-up line: %v", start)
	}
	// --access-logfile: the request's line is in the file (written before the response ends
	// is not promised, so wait for it briefly).
	herdtest.EventuallyNil(t, 5*time.Second, "access.log's line for GET /", func() error {
		b, _ := os.ReadFile(filepath.Join(dir, "access.log"))
		if !strings.Contains(string(b), `"path":"/"`) {
			return fmt.Errorf("it has %q", b)
		}
		return nil
	})
}

// TestUWSGIHarakiriFires: harakiri in an ini is herd's --timeout: a request stuck past it
// gets a 504 and its worker is replaced, while the other worker keeps serving.
func TestUWSGIHarakiriFires(t *testing.T) {
	dir := t.TempDir()
	ini := filepath.Join(dir, "app.ini")
	text := "[uwsgi]\nchdir = " + herdtest.ExampleDir(t) + "\nmodule = app:app\nprocesses = 2\nharakiri = 2\nmax-requests = 1000\n"
	if err := os.WriteFile(ini, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	h := herdtest.Start(t, herdtest.Options{Dir: dir, Args: []string{"--ini", ini}})
	pids := h.WaitReady(2, 20*time.Second)
	for _, e := range h.Events() {
		if e.Str("level") == "warn" && strings.Contains(e.Msg(), "harakiri") {
			t.Fatalf("harakiri named as not taken: %s", e.Msg())
		}
	}
	c := herdtest.Client()
	stuck := make(chan int, 1)
	began := time.Now()
	go func() {
		resp, err := c.Get(h.URL + "/sleep?s=10")
		if err != nil {
			stuck <- -1
			return
		}
		resp.Body.Close()
		stuck <- resp.StatusCode
	}()
	// The other worker serves meanwhile.
	h.WaitServing("/sleep?s=10", 10*time.Second)
	if status, _ := get(t, c, h.URL+"/"); status != 200 {
		t.Fatalf("request beside the stuck one: %d", status)
	}
	status := <-stuck
	took := time.Since(began)
	if status != 504 || took < 2*time.Second || took > 6*time.Second {
		t.Fatalf("stuck request: status %d after %s, want 504 after about 2s", status, took)
	}
	if _, _, ok := h.WaitEvent(0, 10*time.Second, func(e herdtest.Event) bool {
		return e.Msg() == "worker ready" && e.Int("pid") != pids[0] && e.Int("pid") != pids[1]
	}); !ok {
		t.Fatal("the killed worker was not replaced")
	}
}

// squeeze collapses runs of spaces, so table rows compare whatever the column widths.
func squeeze(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.Join(strings.Fields(l), " ")
	}
	return strings.Join(lines, "\n")
}
