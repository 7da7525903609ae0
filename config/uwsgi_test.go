package config

import (
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestUWSGIFile reads an ini as a uWSGI deployment writes it, with every option herd maps,
// and checks the resulting Config and the one warning.
func TestUWSGIFile(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("APP_ROOT", "/srv/shop")
	ini := writeFile(t, dir, "shop.ini", `; a comment
# another
[uwsgi]
project = shop
base = $(APP_ROOT)
chdir = %(base)
module = %(project).wsgi
callable = app
home = %(base)/venv
pythonpath = %(base)/lib
python-path = %dextra
processes = %k
threads = 2
http = 127.0.0.1:9001
http-socket = /run/%n.sock
env = DJANGO_SETTINGS_MODULE=%(project).settings
env = DSN=postgres://u@h/db?a=1,b=2
post-buffering = 65536
disable-logging = true
logto = /var/log/%(project).log
socket = /run/shop-uwsgi.sock
chmod-socket = 660
harakiri = 30
max-requests = 1000
reload-on-rss = 512
touch-reload = /srv/shop/reload
py-autoreload = 2
static-map = /static=/srv/shop/static
static-map = /favicon.ico=/srv/shop/static/favicon.ico
static-map2 = /media=/srv/shop
pidfile = /run/shop.pid
uid = www-data
gid = www-data
buffer-size = 32768
master = true
vacuum = true
die-on-term = true
enable-threads = true
lazy-apps = true
offload-threads = 2
memory-report = true
stats = 127.0.0.1:9191
max-worker-lifetime = 3600
worker-reload-mercy = 20
limit-post = 10485760

[other]
processes = 9
`)
	l, err := Resolve(parse(t), ini)
	if err != nil {
		t.Fatal(err)
	}
	c := l.Config
	got := map[string]any{
		"app": c.App, "chdir": c.Chdir, "venv": c.Venv, "pythonpath": c.PythonPath, "workers": c.Workers,
		"threads": c.Threads, "http": c.HTTP, "env": c.Env, "body-buffer": c.BodyBuffer, "access-log": c.AccessLog,
		"log-file": c.LogFile, "timeout": c.Timeout, "max-requests": c.MaxRequests, "reload-on-rss": c.ReloadOnRSS,
		"admin": c.Admin, "max-lifetime": c.MaxLifetime, "graceful-timeout": c.GracefulTimeout, "max-body-size": c.MaxBodySize,
		"uwsgi-socket": c.UwsgiSocket, "uwsgi-socket-mode": c.UwsgiSocketMode, "static": c.Static,
	}
	want := map[string]any{
		"app": "shop.wsgi:app", "chdir": "/srv/shop", "venv": "/srv/shop/venv",
		"pythonpath": []string{"/srv/shop/lib", dir + "/extra"}, "workers": runtime.NumCPU(), "threads": 2,
		"http":        []string{"127.0.0.1:9001", "unix:/run/shop.sock"},
		"env":         []string{"DJANGO_SETTINGS_MODULE=shop.settings", "DSN=postgres://u@h/db?a=1,b=2"},
		"body-buffer": Size(65536), "access-log": "off", "log-file": "/var/log/shop.log",
		"timeout": 30 * time.Second, "max-requests": 1000, "reload-on-rss": 512,
		"admin": "127.0.0.1:9191", "max-lifetime": time.Hour, "graceful-timeout": 20 * time.Second, "max-body-size": Size(10 << 20),
		"uwsgi-socket": []string{"unix:/run/shop-uwsgi.sock"}, "uwsgi-socket-mode": "660",
		"static": []string{"/static=/srv/shop/static", "/favicon.ico=/srv/shop/static/favicon.ico", "/media=/srv/shop/media"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %v\nwant %v", got, want)
	}
	if src := l.Sources["workers"]; src != "uWSGI file shop.ini line 12 (processes)" {
		t.Fatalf("workers came from %q", src)
	}
	// Mapped options whose herd option is not built yet are named as such; options herd has
	// no equivalent for, too; all in one warning.
	if len(l.Warnings) != 1 {
		t.Fatalf("want one warning, got %q", l.Warnings)
	}
	w := l.Warnings[0]
	if !strings.HasSuffix(w, "herd has no equivalent of memory-report, offload-threads") {
		t.Fatalf("warning does not list the options herd lacks: %s", w)
	}
	for _, m := range uwsgiMappings {
		if m.key == "" || isOption(m.key) {
			continue
		}
		if name := m.names[0]; !strings.Contains(w, name) && strings.Contains(ini, name) {
			t.Errorf("warning does not name %s, whose option is not built yet: %s", name, w)
		}
	}
}

func TestUWSGISectionAndWSGIFile(t *testing.T) {
	dir := t.TempDir()
	ini := writeFile(t, dir, "app.ini", "[uwsgi]\nprocesses = 2\n\n[prod]\nwsgi-file = site/wsgi.py\nprocesses = 6\nmaster = false\n")
	l, err := Resolve(parse(t), ini+":prod")
	if err != nil {
		t.Fatal(err)
	}
	if l.Config.Workers != 6 || l.Config.App != "wsgi" || !reflect.DeepEqual(l.Config.PythonPath, []string{"site"}) {
		t.Fatalf("workers %d app %q pythonpath %q", l.Config.Workers, l.Config.App, l.Config.PythonPath)
	}
	if len(l.Warnings) != 1 || !strings.Contains(l.Warnings[0], "master = false (herd always runs a master)") {
		t.Fatalf("warnings %q", l.Warnings)
	}
}

// TestUWSGIErrors: each way an ini can be wrong, with the message shown.
func TestUWSGIErrors(t *testing.T) {
	cases := []struct{ text, want string }{
		{"[uwsgi]\nmax-request = 5\n", `uWSGI file app.ini: line 2: unknown option "max-request" (did you mean "max-requests"?)`},
		{"[uwsgi]\nchdir = %(root)/x\n", `uWSGI file app.ini: line 2: chdir: %(root) is not set above this line`},
		{"[uwsgi]\nchdir = %q\n", `uWSGI file app.ini: line 2: chdir: unknown magic variable %q`},
		{"[uwsgi]\nharakiri = soon\n", `uWSGI file app.ini: line 2: harakiri: "soon" is not a whole number of seconds`},
		{"[app]\nprocesses = 2\n", `uWSGI file app.ini: no [uwsgi] section`},
		{"[uwsgi]\nmodule = a\nwsgi-file = b.py\n", `uWSGI file app.ini: both module and wsgi-file are set: give one`},
		{"[uwsgi]\nprocesses = two\n", `workers (from uWSGI file app.ini line 2 (processes)): "two" is not an integer; workers accepts an integer`},
	}
	for _, c := range cases {
		ini := writeFile(t, t.TempDir(), "app.ini", c.text)
		_, err := Resolve(parse(t), ini)
		if err == nil || err.Error() != c.want {
			t.Errorf("%q:\n got  %v\n want %s", c.text, err, c.want)
		}
	}
}

// TestUWSGIFlagsWin: flags and HERD_* still beat the ini.
func TestUWSGIFlagsWin(t *testing.T) {
	ini := writeFile(t, t.TempDir(), "app.ini", "[uwsgi]\nprocesses = 2\nthreads = 3\nharakiri = 20\n")
	t.Setenv("HERD_THREADS", "5")
	l, err := Resolve(parse(t, "-w", "4"), ini)
	if err != nil {
		t.Fatal(err)
	}
	if l.Config.Workers != 4 || l.Config.Threads != 5 {
		t.Fatalf("workers %d threads %d", l.Config.Workers, l.Config.Threads)
	}
	if l.Config.Timeout != 20*time.Second {
		t.Fatalf("harakiri 20 gave timeout %s", l.Config.Timeout)
	}
}

// TestUwsgiSocketAloneMeansNoHTTP: a file (or flag) that sets only uwsgi sockets gets no
// default HTTP listener besides, as under uWSGI; one that sets an HTTP address gets that
// address alone; HTTP asked for by any source stays.
func TestUwsgiSocketAloneMeansNoHTTP(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, ini string
		args, env []string
		http      []string
		uwsgi     []string
	}{
		{name: "socket only", ini: "[uwsgi]\nsocket = /run/u.sock\n", uwsgi: []string{"unix:/run/u.sock"}},
		{name: "http-socket only", ini: "[uwsgi]\nhttp-socket = :9000\n", http: []string{":9000"}},
		{name: "http only", ini: "[uwsgi]\nhttp = 127.0.0.1:9000\n", http: []string{"127.0.0.1:9000"}},
		{name: "socket and http-socket", ini: "[uwsgi]\nsocket = :3031\nhttp-socket = :9000\n", http: []string{":9000"}, uwsgi: []string{":3031"}},
		{name: "flag", args: []string{"--uwsgi-socket", ":3031"}, uwsgi: []string{":3031"}},
		{name: "socket in the file, --http flag", ini: "[uwsgi]\nsocket = :3031\n", args: []string{"--http", ":8080"}, http: []string{":8080"}, uwsgi: []string{":3031"}},
		{name: "socket in the file, HERD_HTTP", ini: "[uwsgi]\nsocket = :3031\n", env: []string{"HERD_HTTP", ":8081"}, http: []string{":8081"}, uwsgi: []string{":3031"}},
		{name: "nothing", http: []string{"127.0.0.1:8000"}},
		{name: "https flag", args: []string{"--https", ":8443", "--cert", "c.pem", "--key", "k.pem"}},
		{name: "https and http flags", args: []string{"--https", ":8443", "--http", ":8080", "--cert", "c.pem", "--key", "k.pem"}, http: []string{":8080"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.env != nil {
				t.Setenv(c.env[0], c.env[1])
			}
			file := ""
			if c.ini != "" {
				file = writeFile(t, dir, "app.ini", c.ini)
			}
			l, err := Resolve(parse(t, c.args...), file)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(l.Config.HTTP, c.http) || !reflect.DeepEqual(l.Config.UwsgiSocket, c.uwsgi) {
				t.Fatalf("http %q uwsgi-socket %q, want %q and %q", l.Config.HTTP, l.Config.UwsgiSocket, c.http, c.uwsgi)
			}
			l.Config.App = "a:b"
			if err := l.Config.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestUWSGILazyApps: uWSGI imports the app once and forks unless lazy-apps: an .ini without
// it preloads, lazy-apps = true (or the old lazy) does not, and a flag beats the file.
func TestUWSGILazyApps(t *testing.T) {
	for _, c := range []struct {
		line  string
		flags []string
		want  bool
		from  string
	}{
		{"", nil, true, "uWSGI file app.ini (no lazy-apps: uWSGI imports the app once and forks)"},
		{"lazy-apps = true", nil, false, "uWSGI file app.ini line 3 (lazy-apps)"},
		{"lazy-apps = false", nil, true, "uWSGI file app.ini line 3 (lazy-apps)"},
		{"lazy = 1", nil, false, "uWSGI file app.ini line 3 (lazy)"},
		{"", []string{"--preload=false"}, false, "flag --preload"},
	} {
		file := writeFile(t, t.TempDir(), "app.ini", "[uwsgi]\nmodule = app:app\n"+c.line+"\n")
		l, err := Resolve(parse(t, c.flags...), file)
		if err != nil {
			t.Fatalf("%q: %v", c.line, err)
		}
		if l.Config.Preload != c.want || l.Sources["preload"] != c.from {
			t.Errorf("%q %v: preload %v from %q, want %v from %q", c.line, c.flags, l.Config.Preload, l.Sources["preload"], c.want, c.from)
		}
		for _, w := range l.Warnings {
			if strings.Contains(w, "lazy") {
				t.Errorf("%q: warned %q", c.line, w)
			}
		}
	}
}
