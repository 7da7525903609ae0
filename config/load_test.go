package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// parse registers every flag on a fresh set and parses args, as `herd serve` does.
func parse(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return fs
}

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestPrecedence sets one option in every source and removes the strongest one at a time:
// flag > environment > file > default, for each file format.
func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"herd.yaml": "workers: 3\n",
		"herd.toml": "workers = 3\n",
		"herd.json": `{"workers": 3}`,
		"app.ini":   "[uwsgi]\nprocesses = 3\n",
	}
	for name, text := range files {
		t.Run(name, func(t *testing.T) {
			file := writeFile(t, dir, name, text)
			cases := []struct {
				flag, env string
				want      int
				source    string
			}{
				{"5", "4", 5, "flag --workers"},
				{"", "4", 4, "environment HERD_WORKERS"},
				{"", "", 3, "file"},
			}
			for _, c := range cases {
				var args []string
				if c.flag != "" {
					args = []string{"--workers", c.flag}
				}
				if c.env != "" {
					t.Setenv("HERD_WORKERS", c.env)
				} else {
					os.Unsetenv("HERD_WORKERS")
				}
				l, err := Resolve(parse(t, args...), file)
				if err != nil {
					t.Fatal(err)
				}
				if l.Config.Workers != c.want || !strings.Contains(l.Sources["workers"], c.source) {
					t.Errorf("flag %q env %q: workers %d from %q, want %d from %s", c.flag, c.env, l.Config.Workers, l.Sources["workers"], c.want, c.source)
				}
			}
		})
	}
	t.Run("default", func(t *testing.T) {
		l, err := Resolve(parse(t), "")
		if err != nil {
			t.Fatal(err)
		}
		if l.Config.QueueSize != 1024 || l.Sources["queue-size"] != "default" {
			t.Fatalf("queue-size %d from %q", l.Config.QueueSize, l.Sources["queue-size"])
		}
	})
}

// TestDefaultFileDiscovery: without --config, herd.yaml (then .yml, .toml, .json) in the
// working directory is read.
func TestDefaultFileDiscovery(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "herd.toml", "threads = 2\n")
	writeFile(t, dir, "herd.yaml", "threads: 7\n")
	t.Chdir(dir)
	l, err := Resolve(parse(t), "")
	if err != nil {
		t.Fatal(err)
	}
	if l.Config.Threads != 7 || l.File != "herd.yaml" {
		t.Fatalf("threads %d from file %q, want 7 from herd.yaml", l.Config.Threads, l.File)
	}
}

// TestBadInput: one case per class of bad input, with the exact error a user sees.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	// A directory is unreadable as a file for root too, who reads a mode-0 file anyway.
	unreadable := filepath.Join(dir, "conf.yaml")
	if err := os.Mkdir(unreadable, 0o755); err != nil {
		t.Fatal(err)
	}
	type badCase struct {
		name  string
		args  []string
		env   map[string]string
		file  string // name=text, or @path of an existing file
		want  string
		valid bool // the error comes from Validate
	}
	cases := []badCase{
		{name: "bad type in a flag", args: []string{"--workers", "many"},
			want: `workers (from flag --workers): "many" is not an integer; workers accepts an integer`},
		{name: "bad type through a gunicorn alias", args: []string{"-b", "x", "--keep-alive", "soon"},
			want: `keep-alive (from flag --keep-alive): "soon" is not a duration; keep-alive accepts a duration such as 500ms, 30s or 2m`},
		{name: "bad type in the environment", env: map[string]string{"HERD_QUEUE_TIMEOUT": "forever"},
			want: `queue-timeout (from environment HERD_QUEUE_TIMEOUT): "forever" is not a duration; queue-timeout accepts a duration such as 500ms, 30s or 2m`},
		{name: "bad enum in a file", file: "herd.yaml=log-level: loud\n",
			want: `log-level (from config file FILE): "loud" is not allowed; log-level accepts one of debug, info, warn, error`},
		{name: "bad size in an ini", file: "app.ini=[uwsgi]\npost-buffering = lots\n",
			want: `body-buffer (from uWSGI file app.ini line 2 (post-buffering)): "lots" is not a size; body-buffer accepts a size in bytes such as 65536, 64KiB, 10MB or 1GiB`},
		{name: "unknown key with suggestion", file: "herd.yaml=wrokers: 2\n",
			want: `config file herd.yaml: unknown key "wrokers" (did you mean "workers"?)`},
		{name: "unknown ini option with suggestion", file: "app.ini=[uwsgi]\nprocesess = 2\n",
			want: `uWSGI file app.ini: line 2: unknown option "procesess" (did you mean "processes"?)`},
		{name: "unreadable file", args: nil, file: "@" + unreadable,
			want: "read config file " + unreadable + ": read " + unreadable + ": is a directory"},
		{name: "missing file", file: "@" + filepath.Join(dir, "nope.toml"),
			want: "config: stat " + filepath.Join(dir, "nope.toml") + ": no such file or directory"},
		{name: "out of range", args: []string{"--app", "a:b", "--threads", "0", "--workers", "-1"}, valid: true,
			want: "invalid configuration:\n  threads: 0: must be 1 or more\n  workers: -1: must be 0 (one per CPU core) or more"},
		{name: "missing app", valid: true,
			want: "invalid configuration:\n  app: missing: give the WSGI app as module:callable, e.g. herd serve hello:app"},
		{name: "bad env pair", args: []string{"--app", "a", "-e", "NOVALUE"}, valid: true,
			want: "invalid configuration:\n  env: \"NOVALUE\" is not KEY=VALUE"},
		{name: "bad bind", args: []string{"--app", "a", "-b", "unix:"}, valid: true,
			want: "invalid configuration:\n  http: \"unix:\" has no path (e.g. unix:/run/herd.sock)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			file := ""
			switch {
			case strings.HasPrefix(c.file, "@"):
				file = c.file[1:]
			case c.file != "":
				name, text, _ := strings.Cut(c.file, "=")
				file = writeFile(t, t.TempDir(), name, text)
			}
			l, err := Resolve(parse(t, c.args...), file)
			if err == nil && c.valid {
				err = l.Config.Validate()
			}
			if err == nil {
				t.Fatalf("no error, want %q", c.want)
			}
			want := strings.ReplaceAll(c.want, "FILE", file)
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error:\n%s\nwant it to contain:\n%s", err, want)
			}
		})
	}
}

// TestGunicornCommandLine: gunicorn's flags mean what they mean in gunicorn.
func TestGunicornCommandLine(t *testing.T) {
	fs := parse(t, "-w", "3", "-b", "127.0.0.1:9001", "--bind", "unix:/tmp/app.sock", "--threads", "4",
		"--graceful-timeout", "10", "--keep-alive", "5", "--access-logfile", "/tmp/access.log",
		"--error-logfile", "/tmp/error.log", "--chdir", "/srv", "-e", "A=1", "--env", "DSN=x,y=z",
		"--pythonpath", "/opt/lib", "--timeout", "30", "--max-requests", "1000", "--max-requests-jitter", "50")
	l, err := Resolve(fs, "")
	if err != nil {
		t.Fatal(err)
	}
	c := l.Config
	got := []any{c.Workers, c.HTTP, c.Threads, c.GracefulTimeout, c.KeepAlive, c.AccessLog, c.LogFile, c.Chdir, c.Env,
		c.PythonPath, c.Timeout, c.MaxRequests, c.MaxRequestsJitter}
	want := []any{3, []string{"127.0.0.1:9001", "unix:/tmp/app.sock"}, 4, 10 * time.Second, 5 * time.Second,
		"/tmp/access.log", "/tmp/error.log", "/srv", []string{"A=1", "DSN=x,y=z"}, []string{"/opt/lib"},
		30 * time.Second, 1000, 50}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %v\nwant %v", got, want)
	}
	if l.Sources["http"] != "flag --bind" && l.Sources["http"] != "flag --http" {
		t.Fatalf("http source %q", l.Sources["http"])
	}
}

// TestDocsUpToDate fails when docs/ no longer matches the Config: run `go generate ./config`.
func TestDocsUpToDate(t *testing.T) {
	for name, write := range DocFiles {
		var b strings.Builder
		if err := write(&b); err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(filepath.Join("..", "docs", name))
		if err != nil {
			t.Fatalf("docs/%s: %v (run `go generate ./config`)", name, err)
		}
		if string(committed) != b.String() {
			t.Errorf("docs/%s is stale: run `go generate ./config` and commit the result", name)
		}
	}
}

// A relative --chdir is made absolute once: the worker starts in it, so passing it on
// relative would make the worker look for DIR/DIR.
func TestChdirBecomesAbsolute(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "site"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	c := Defaults()
	c.App = "hello:app"
	c.Chdir = "site"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "site"); c.Chdir != want {
		t.Fatalf("chdir = %q, want %q", c.Chdir, want)
	}
	c.Chdir = "missing"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `chdir: "missing" is not a directory`) {
		t.Fatalf("missing chdir: err = %v", err)
	}
}

func TestMountAndUwsgiSocket(t *testing.T) {
	for _, tc := range []struct {
		app, mount, mode string
		uwsgi, http      []string
		wantApp, prefix  string
		err              string
	}{
		{mount: "/shop/=shop.wsgi:app", mode: "0660", http: []string{"127.0.0.1:8000"}, wantApp: "shop.wsgi:app", prefix: "/shop"},
		{app: "hello:app", mount: "/p", mode: "0666", uwsgi: []string{"unix:/run/u.sock"}, wantApp: "hello:app", prefix: "/p"},
		{app: "hello:app", mount: "/p=other:app", mode: "0660", http: []string{":8000"}, err: "herd serves one app"},
		{app: "hello:app", mount: "p=hello:app", mode: "0660", http: []string{":8000"}, err: "the prefix must be a path"},
		{app: "hello:app", mode: "0999", uwsgi: []string{"127.0.0.1:3031"}, err: "uwsgi-socket-mode"},
		{app: "hello:app", mode: "0660", uwsgi: []string{"unix:"}, err: "uwsgi-socket: \"unix:\" has no path"},
		{app: "hello:app", mode: "0660", err: "at least one listen address"},
	} {
		c := Defaults()
		c.App, c.Mount, c.UwsgiSocketMode, c.UwsgiSocket, c.HTTP = tc.app, tc.mount, tc.mode, tc.uwsgi, tc.http
		err := c.Validate()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%+v: err = %v, want %q", tc, err, tc.err)
			}
			continue
		}
		if err != nil || c.App != tc.wantApp || c.MountPrefix() != tc.prefix {
			t.Errorf("%+v: app %q prefix %q err %v", tc, c.App, c.MountPrefix(), err)
		}
	}
}
