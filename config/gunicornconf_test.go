package config

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// realPython is the interpreter python3 names, found once: a pyenv shim on PATH costs
// seconds per start on a loaded machine, and every gunicorn file is evaluated by a start.
var realPython = sync.OnceValues(func() (string, error) {
	out, err := exec.Command("python3", "-c", "import sys; print(sys.executable)").Output()
	return strings.TrimSpace(string(out)), err
})

// useRealPython has the test's gunicorn files evaluated by that interpreter (HERD_PYTHON).
func useRealPython(t *testing.T) {
	t.Helper()
	python, err := realPython()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	t.Setenv("HERD_PYTHON", python)
}

// gunicornConf is a gunicorn config file as deployments write them: imports, helper names,
// computed values, hooks, and settings herd takes or does not.
const gunicornConf = `import multiprocessing
import os

print("config files may print: this must not spoil what herd reads")
PORT = 8123
bind_port = PORT
bind = ["127.0.0.1:%d" % PORT, "unix:/run/app.sock"]
workers = multiprocessing.cpu_count() * 0 + 3
threads = 2
timeout = 20
graceful_timeout = 7
keepalive = 4
max_requests = 100
max_requests_jitter = 10
accesslog = None
errorlog = "/var/log/app.log"
loglevel = "warning"
raw_env = ["A=1", "DSN=x,y"]
umask = 0o027
forwarded_allow_ips = "10.0.0.1,10.0.0.2"
wsgi_app = "shop.wsgi:application"
worker_class = "gthread"
pidfile = os.environ.get("APP_PIDFILE", "/run/app.pid")
chdir = "/srv"
reload = True
user = "www-data"
group = 33
backlog = 64
preload_app = True

def post_fork(server, worker):
    pass

def on_starting(server):
    pass

def helper():
    pass
`

// TestGunicornConfFile: a gunicorn.conf.py is evaluated by Python and its settings become
// herd's options; flags beat it; what herd does not take is named in one warning.
func TestGunicornConfFile(t *testing.T) {
	useRealPython(t)
	t.Setenv("APP_PIDFILE", "/run/shop.pid")
	file := writeFile(t, t.TempDir(), "gunicorn.conf.py", gunicornConf)
	l, err := Resolve(parse(t, "--threads", "5"), file)
	if err != nil {
		t.Fatal(err)
	}
	c := l.Config
	got := map[string]any{"http": c.HTTP, "workers": c.Workers, "threads": c.Threads, "timeout": c.Timeout,
		"graceful-timeout": c.GracefulTimeout, "keep-alive": c.KeepAlive, "max-requests": c.MaxRequests,
		"max-requests-jitter": c.MaxRequestsJitter, "access-log": c.AccessLog, "log-file": c.LogFile,
		"log-level": c.LogLevel, "env": c.Env, "umask": c.Umask, "forwarded-allow-ips": c.ForwardedAllowIPs,
		"app": c.App, "pidfile": c.Pidfile, "chdir": c.Chdir, "reload": c.Reload, "uid": c.UID, "gid": c.GID,
		"preload": c.Preload, "hooks": c.GunicornHooks}
	want := map[string]any{"http": []string{"127.0.0.1:8123", "unix:/run/app.sock"}, "workers": 3, "threads": 5,
		"timeout": 20 * time.Second, "graceful-timeout": 7 * time.Second, "keep-alive": 4 * time.Second,
		"max-requests": 100, "max-requests-jitter": 10, "access-log": "off", "log-file": "/var/log/app.log",
		"log-level": "warn", "env": []string{"A=1", "DSN=x,y"}, "umask": "027",
		"forwarded-allow-ips": []string{"10.0.0.1", "10.0.0.2"}, "app": "shop.wsgi:application",
		"pidfile": "/run/shop.pid", "chdir": "/srv", "reload": true, "uid": "www-data", "gid": "33",
		"preload": true, "hooks": file}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %v\nwant %v", got, want)
	}
	if l.Sources["workers"] != "gunicorn file gunicorn.conf.py (workers)" || l.Sources["threads"] != "flag --threads" {
		t.Fatalf("sources: workers %q, threads %q", l.Sources["workers"], l.Sources["threads"])
	}
	wantWarning := "gunicorn file gunicorn.conf.py: herd does not take backlog = 64 (herd listens with the kernel's backlog (net.core.somaxconn) and bounds its connections with --max-connections); " +
		"server hooks on_starting (herd's master runs no Python)"
	if len(l.Warnings) != 1 || l.Warnings[0] != wantWarning {
		t.Fatalf("warnings %q\nwant [%q]", l.Warnings, wantWarning)
	}
}

// TestGunicornConfPrecedence: flag > environment > gunicorn file > default.
func TestGunicornConfPrecedence(t *testing.T) {
	useRealPython(t)
	file := writeFile(t, t.TempDir(), "g.py", "workers = 3\n")
	for _, c := range []struct {
		args []string
		env  string
		want int
		from string
	}{
		{[]string{"-w", "5"}, "4", 5, "flag --workers"},
		{nil, "4", 4, "environment HERD_WORKERS"},
		{nil, "", 3, "gunicorn file g.py (workers)"},
	} {
		if c.env != "" {
			t.Setenv("HERD_WORKERS", c.env)
		} else {
			os.Unsetenv("HERD_WORKERS")
		}
		l, err := Resolve(parse(t, c.args...), file)
		if err != nil {
			t.Fatal(err)
		}
		if l.Config.Workers != c.want || l.Sources["workers"] != c.from {
			t.Errorf("args %q env %q: workers %d from %q, want %d from %q", c.args, c.env, l.Config.Workers, l.Sources["workers"], c.want, c.from)
		}
	}
}

// TestGunicornConfFound: without --config, ./gunicorn.conf.py is read as gunicorn reads it,
// after herd's own files; when a herd file wins, a warning says the gunicorn one is not read.
func TestGunicornConfFound(t *testing.T) {
	useRealPython(t)
	dir := t.TempDir()
	t.Chdir(dir)
	writeFile(t, dir, "gunicorn.conf.py", "workers = 3\n")
	l, err := Resolve(parse(t), "")
	if err != nil || l.Config.Workers != 3 || l.File != "gunicorn.conf.py" || len(l.Warnings) != 0 {
		t.Fatalf("workers %d from %q, warnings %q, err %v", l.Config.Workers, l.File, l.Warnings, err)
	}
	writeFile(t, dir, "herd.yaml", "workers: 2\n")
	l, err = Resolve(parse(t), "")
	want := "gunicorn.conf.py is not read: herd.yaml is (give -c gunicorn.conf.py to read that one instead)"
	if err != nil || l.Config.Workers != 2 || len(l.Warnings) != 1 || l.Warnings[0] != want {
		t.Fatalf("workers %d, warnings %q, err %v", l.Config.Workers, l.Warnings, err)
	}
	// python:MODULE, as gunicorn's -c python:MODULE, from the working directory.
	writeFile(t, dir, "gconf.py", "workers = 6\n")
	if l, err = Resolve(parse(t), "python:gconf"); err != nil || l.Config.Workers != 6 {
		t.Fatalf("python:gconf: workers %d, err %v", l.Config.Workers, err)
	}
}

// TestGunicornConfErrors: each way a gunicorn file can be wrong, with the message shown.
func TestGunicornConfErrors(t *testing.T) {
	useRealPython(t)
	cases := []struct{ text, want string }{
		{"worker = 4\n", `gunicorn file g.py: "worker" is no gunicorn setting (did you mean "workers"?)`},
		{"workers = 'many'\n", `workers (from gunicorn file g.py (workers)): "many" is not an integer; workers accepts an integer`},
		{"timeout = 'soon'\n", `timeout (from gunicorn file g.py (timeout)): "soon" is not a duration; timeout accepts a duration such as 500ms, 30s or 2m`},
		{"bind = object()\n", `gunicorn file g.py: bind = <object object at`},
		{"umask = 'rw'\n", `gunicorn file g.py: umask: "rw" is not a mode such as 0o022`},
		{"workers = (\n", "SyntaxError"},
		{"import no_such_module_herd\n", "ModuleNotFoundError: No module named 'no_such_module_herd'"},
	}
	for _, c := range cases {
		file := writeFile(t, t.TempDir(), "g.py", c.text)
		_, err := Resolve(parse(t), file)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got  %v\n want %s", c.text, err, c.want)
		}
	}
	// Names that are the file's own are ignored, as gunicorn ignores them.
	file := writeFile(t, t.TempDir(), "g.py", "import os\nWORKERS = 3\nbind_port = 80\nhost = 'x'\nworkers = 2\n")
	if l, err := Resolve(parse(t), file); err != nil || l.Config.Workers != 2 || len(l.Warnings) != 0 {
		t.Fatalf("helper names: workers %d, warnings %q, err %v", l.Config.Workers, l.Warnings, err)
	}
	// An unreadable file: gunicorn's message is its traceback; herd names the file.
	missing := filepath.Join(t.TempDir(), "nope.py")
	if _, err := Resolve(parse(t), missing); err == nil || err.Error() != "config: stat "+missing+": no such file or directory" {
		t.Fatalf("missing file: %v", err)
	}
}
