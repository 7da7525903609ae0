package server

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// The migration suite: real gunicorn and uWSGI configurations of Django and Flask sites
// (server/testdata/migration/) run through herd as their users run them, checked for what
// such a user looks at: it starts, serves, logs where and how the original would, and stops
// cleanly.

// migrationSite copies one fixture site into a fresh directory, so that the logs and
// pidfiles the configuration writes next to it stay in the test's own directory.
func migrationSite(t *testing.T, name string) string {
	t.Helper()
	src := filepath.Join(herdtest.RepoRoot(t), "server", "testdata", "migration", name)
	dst := t.TempDir()
	err := filepath.Walk(src, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// readWhen waits until the file's content satisfies ok, and returns it.
func readWhen(t *testing.T, path, what string, ok func(string) bool) string {
	t.Helper()
	var text string
	herdtest.Eventually(t, 30*time.Second, what, func() bool {
		b, _ := os.ReadFile(path)
		text = string(b)
		return ok(text)
	})
	return text
}

// stopCleanly sends TERM and expects exit 0 (after "herd stopped" when info is logged).
func stopCleanly(t *testing.T, h *herdtest.Instance) {
	t.Helper()
	h.Signal(syscall.SIGTERM)
	if code := h.Wait(60 * time.Second); code != 0 {
		t.Fatalf("exit %d after TERM", code)
	}
	if h.Count(func(e herdtest.Event) bool { return e.Str("level") == "info" }) == 0 {
		return
	}
	if _, _, ok := h.WaitEvent(0, 5*time.Second, herdtest.IsMsg("herd stopped")); !ok {
		t.Fatal("no 'herd stopped' in the log")
	}
}

// debianPython runs the Django sites: Debian's python3-django imports only under it.
const debianPython = "/usr/bin/python3"

func requireDjango(t *testing.T) {
	herdtest.RequirePythonModule(t, debianPython, "django", "python3-django")
}

// clf is a gunicorn/Apache combined line: host - user [time] "request" status bytes "ref" "ua".
var clf = regexp.MustCompile(`^(\S+) - (\S+) \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "(GET|POST) (\S+) HTTP/1\.1" (\d{3}) (\d+|-) "([^"]*)" "([^"]*)"`)

// TestMigrationGunicornDjangoConf: a Django project's gunicorn.conf.py (gthread, access log
// file in gunicorn's format, raw_env, forwarded_allow_ips, a post_fork hook) runs as it is.
func TestMigrationGunicornDjangoConf(t *testing.T) {
	requireDjango(t)
	dir := migrationSite(t, "djangosite")
	addr := herdtest.FreeAddr(t)
	h := herdtest.Start(t, herdtest.Options{Dir: dir, Listen: addr, Env: []string{"BIND=" + addr, "WEB_CONCURRENCY=2"},
		Args: []string{"-c", "gunicorn.conf.py", "--python", debianPython}})
	h.WaitReady(2, 60*time.Second)
	warn, _, ok := h.WaitEvent(0, time.Second, func(e herdtest.Event) bool { return e.Str("level") == "warn" })
	if !ok || !strings.Contains(warn.Msg(), "post_fork") || !strings.Contains(warn.Msg(), "proc_name = djsite") {
		t.Fatalf("want one warning naming post_fork and proc_name, got %v", warn)
	}
	c := herdtest.Client()
	if code, body := herdtest.Get(t, c, h.URL+"/"); code != 200 || !strings.Contains(body, "Django under herd") {
		t.Fatalf("GET /: %d %q", code, body)
	}
	// A trusted proxy (127.0.0.1) forwards the client: the app and the access log both see it.
	req, _ := http.NewRequest("GET", h.URL+"/seen", nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	req.Header.Set("User-Agent", "migration-test")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var seen struct {
		RemoteAddr string `json:"remote_addr"`
		SiteMode   string `json:"site_mode"`
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := json.Unmarshal(b, &seen); err != nil || seen.RemoteAddr != "203.0.113.9" || seen.SiteMode != "production" {
		t.Fatalf("/seen: %s (%v)", b, err)
	}
	access := readWhen(t, filepath.Join(dir, "access.log"), "two access lines", func(s string) bool { return strings.Count(s, "\n") >= 2 })
	lines := strings.Split(strings.TrimSpace(access), "\n")
	m := clf.FindStringSubmatch(lines[1])
	if m == nil || m[1] != "203.0.113.9" || m[4] != "/seen" || m[5] != "200" || m[8] != "migration-test" {
		t.Fatalf("access line in gunicorn's format with the forwarded client expected, got %q", lines[1])
	}
	if _, err := strconv.Atoi(strings.Fields(lines[1])[len(strings.Fields(lines[1]))-1]); err != nil {
		t.Fatalf("%%(M)s (milliseconds) missing at the end of %q", lines[1])
	}
	stopCleanly(t, h)
}

// TestMigrationGunicornTracebackAtWarn: with gunicorn's --log-level warning, an app's
// exception is one error event carrying the whole traceback.
func TestMigrationGunicornTracebackAtWarn(t *testing.T) {
	requireDjango(t)
	dir := migrationSite(t, "djangosite")
	addr := herdtest.FreeAddr(t)
	h := herdtest.Start(t, herdtest.Options{Dir: dir, Listen: addr, Env: []string{"BIND=" + addr},
		Args: []string{"-c", "gunicorn.conf.py", "--python", debianPython, "--log-level", "warning", "-w", "1"}})
	c := herdtest.Client()
	herdtest.Eventually(t, 60*time.Second, "the site answering", func() bool {
		resp, err := c.Get(h.URL + "/")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	if code, _ := herdtest.Get(t, c, h.URL+"/boom"); code != 500 {
		t.Fatalf("/boom: %d", code)
	}
	ev, _, ok := h.WaitEvent(0, 10*time.Second, func(e herdtest.Event) bool {
		return e.Str("level") == "error" && strings.Contains(e.Msg(), "ZeroDivisionError")
	})
	if !ok {
		t.Fatal("no error event with the ZeroDivisionError")
	}
	if msg := ev.Msg(); !strings.Contains(msg, "Traceback (most recent call last):") || !strings.Contains(msg, "in boom") {
		t.Fatalf("the traceback is not whole in one event:\n%s", msg)
	}
	for _, e := range h.Events() {
		if e.Str("level") == "info" {
			t.Fatalf("an info event under --log-level warning: %v", e)
		}
	}
	stopCleanly(t, h)
}

// TestMigrationGunicornFlaskCommandLine: a Flask app's gunicorn command line, flags herd does
// not take included, runs as it is; those are named in one warning.
func TestMigrationGunicornFlaskCommandLine(t *testing.T) {
	herdtest.RequirePythonModule(t, "python3", "flask", "python3-flask")
	dir := migrationSite(t, "flasksite")
	addr := herdtest.FreeAddr(t)
	h := herdtest.Start(t, herdtest.Options{Dir: dir, Listen: addr, Args: []string{
		"-w", "2", "-k", "gthread", "--threads", "2", "-b", addr, "-t", "30", "--preload", "--name", "web",
		"--statsd-host", "localhost:8125", "--access-logfile", "access.log", "--access-logformat", `%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"`,
		"--error-logfile", "-", "--log-level", "info", "app:app"}})
	h.WaitReady(2, 60*time.Second)
	warn, _, ok := h.WaitEvent(0, time.Second, func(e herdtest.Event) bool { return e.Str("level") == "warn" })
	for _, want := range []string{"--name web", "--statsd-host localhost:8125 (herd has no statsd"} {
		if !ok || !strings.Contains(warn.Msg(), want) {
			t.Fatalf("warning lacks %q: %v", want, warn)
		}
	}
	c := herdtest.Client()
	if code, body := herdtest.Get(t, c, h.URL+"/"); code != 200 || body != "Flask under herd" {
		t.Fatalf("GET /: %d %q", code, body)
	}
	line := readWhen(t, filepath.Join(dir, "access.log"), "the access line", func(s string) bool { return strings.HasSuffix(s, "\n") })
	if m := clf.FindStringSubmatch(line); m == nil || m[1] != "127.0.0.1" || m[4] != "/" || m[6] != "16" {
		t.Fatalf("access line %q", line)
	}
	stopCleanly(t, h)
}

// TestMigrationGunicornRefusals: what herd cannot run as asked stops the start with a message
// that says what to do: a worker class herd lacks, -D.
func TestMigrationGunicornRefusals(t *testing.T) {
	dir := migrationSite(t, "flasksite")
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"-k", "gevent", "app:app"}, []string{"worker-class", `"gevent" is not supported yet`, "-k sync, -k gthread"}},
		{[]string{"-k", "tornado", "app:app"}, []string{"tornado", "-k sync, -k gthread", "-k asgi"}},
		{[]string{"-D", "app:app"}, []string{"--daemon", "foreground", "systemd"}},
	} {
		res := herdtest.Run(t, dir, nil, append([]string{"serve"}, tc.args...)...)
		for _, w := range tc.want {
			if res.Code != 1 || !strings.Contains(res.Stderr, w) {
				t.Fatalf("herd serve %v: exit %d, stderr %q lacks %q", tc.args, res.Code, res.Stderr, w)
			}
		}
	}
}

// TestMigrationUWSGIDjangoIni: a Debian-style uwsgi.ini of a Django site: the request lines
// go into the logto file in the log-format given, every response carries the add-header
// headers, and the attached task worker is started, restarted when it dies, and stopped with
// the master.
func TestMigrationUWSGIDjangoIni(t *testing.T) {
	requireDjango(t)
	dir := migrationSite(t, "djangosite")
	addr := herdtest.FreeAddr(t)
	h := herdtest.Start(t, herdtest.Options{Dir: dir, Listen: addr, Env: []string{"BIND=" + addr}, Args: []string{"--ini", "uwsgi.ini", "--python", debianPython}})
	siteLog := filepath.Join(dir, "site.log")
	readWhen(t, siteLog, "two workers ready in site.log", func(s string) bool { return strings.Count(s, `"worker ready"`) >= 2 })
	c := herdtest.Client()
	resp, err := c.Get(h.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("GET /: %d, headers %v", resp.StatusCode, resp.Header)
	}
	resp, err = c.Get(h.URL + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 || resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("GET /nope: %d, headers %v", resp.StatusCode, resp.Header)
	}
	text := readWhen(t, siteLog, "the request lines in site.log", func(s string) bool { return strings.Contains(s, `"GET /nope HTTP/1.1" 404`) })
	var reqLine string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, `"GET / HTTP/1.1"`) {
			reqLine = l
		}
	}
	if m := clf.FindStringSubmatch(reqLine); m == nil || m[1] != "127.0.0.1" || m[2] != "-" || m[5] != "200" || !strings.HasSuffix(reqLine, "ms") {
		t.Fatalf("request line in uWSGI's log-format expected in site.log, got %q", reqLine)
	}

	// The attached daemon: running, restarted after it is killed, gone after the stop.
	pidfile := filepath.Join(dir, "taskworker.pid")
	first := readPid(t, pidfile, 0)
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	second := readPid(t, pidfile, first)
	st := herdtest.Run(t, dir, nil, "status", "--json", "--pid", strconv.Itoa(h.Cmd.Process.Pid))
	if st.Code != 0 || !strings.Contains(st.Stdout, `"daemons"`) || !strings.Contains(st.Stdout, "taskworker.py") || !strings.Contains(st.Stdout, `"restarts":1`) {
		t.Fatalf("herd status: %d %s %s", st.Code, st.Stdout, st.Stderr)
	}
	stopCleanly(t, h)
	if herdtest.Alive(second) {
		t.Fatalf("the task worker %d outlived the master", second)
	}
}

// readPid waits until pidfile names a live process other than not, and returns it.
func readPid(t *testing.T, pidfile string, not int) int {
	t.Helper()
	var pid int
	herdtest.Eventually(t, 30*time.Second, "a live daemon in "+pidfile, func() bool {
		b, _ := os.ReadFile(pidfile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return pid > 0 && pid != not && herdtest.Alive(pid)
	})
	return pid
}

// TestMigrationUWSGIUnsupportedWork: a uwsgi.ini with cron, spooler, mules and routes stops the
// start with an error naming each; --ignore-unsupported starts without them, warned.
func TestMigrationUWSGIUnsupportedWork(t *testing.T) {
	herdtest.RequirePythonModule(t, "python3", "flask", "python3-flask")
	dir := migrationSite(t, "flasksite")
	addr := herdtest.FreeAddr(t)
	env := []string{"BIND=" + addr}
	res := herdtest.Run(t, dir, env, "serve", "--ini", "uwsgi.ini")
	for _, want := range []string{"cron (use a systemd timer", "spooler (run a task queue", "mules (", "route (put the rule in nginx", "--ignore-unsupported"} {
		if res.Code != 1 || !strings.Contains(res.Stderr, want) {
			t.Fatalf("exit %d, stderr %q lacks %q", res.Code, res.Stderr, want)
		}
	}
	h := herdtest.Start(t, herdtest.Options{Dir: dir, Listen: addr, Env: env, Args: []string{"--ini", "uwsgi.ini", "--ignore-unsupported"}})
	h.WaitReady(2, 60*time.Second)
	if _, _, ok := h.WaitEvent(0, time.Second, func(e herdtest.Event) bool {
		return e.Str("level") == "warn" && strings.Contains(e.Msg(), "started without (--ignore-unsupported): uWSGI cron")
	}); !ok {
		t.Fatal("no warning naming what herd started without")
	}
	if code, body := herdtest.Get(t, herdtest.Client(), h.URL+"/"); code != 200 || body != "Flask under herd" {
		t.Fatalf("GET /: %d %q", code, body)
	}
	stopCleanly(t, h)
}

// TestMigrationUWSGIFlaskStatic: static-map serves the site's files, the app the rest; a
// smart-attach-daemon that backgrounds itself is followed by its pidfile and stopped with the
// master.
func TestMigrationUWSGIFlaskStatic(t *testing.T) {
	herdtest.RequirePythonModule(t, "python3", "flask", "python3-flask")
	dir := migrationSite(t, "flasksite")
	addr := herdtest.FreeAddr(t)
	h := herdtest.Start(t, herdtest.Options{Dir: dir, Listen: addr, Env: []string{"BIND=" + addr}, Args: []string{"--ini", "static.ini"}})
	h.WaitReady(1, 60*time.Second)
	c := herdtest.Client()
	if code, body := herdtest.Get(t, c, h.URL+"/static/site.css"); code != 200 || !strings.Contains(body, "teal") {
		t.Fatalf("static: %d %q", code, body)
	}
	if code, body := herdtest.Get(t, c, h.URL+"/"); code != 200 || body != "Flask under herd" {
		t.Fatalf("GET /: %d %q", code, body)
	}
	bg := readPid(t, filepath.Join(dir, "bg.pid"), 0)
	if _, _, ok := h.WaitEvent(0, 10*time.Second, herdtest.IsMsg("daemon went to the background: following its pidfile")); !ok {
		t.Fatal("the smart daemon was not followed")
	}
	stopCleanly(t, h)
	herdtest.Eventually(t, 10*time.Second, "the background daemon gone", func() bool { return !herdtest.Alive(bg) })
}
