package config

import (
	"strings"
	"testing"
)

// TestEveryGunicornFlagAccepted: each flag of gunicorn 27's settings list parses (none is an
// unknown flag), and each either sets a herd option, is named in the one warning, or is
// refused with the reason.
func TestEveryGunicornFlagAccepted(t *testing.T) {
	values := map[string]string{ // values gunicorn would take, where a number will not do
		"worker-class": "gthread", "reload-engine": "poll", "log-level": "warning", "access-logfile": "-",
		"error-logfile": "-", "log-file": "-", "bind": "127.0.0.1:8001", "env": "A=1", "forwarded-allow-ips": "10.0.0.1",
		"proxy-protocol": "v2", "protocol": "http", "header-map": "dangerous", "access-logformat": "%(h)s %(r)s",
		"chdir": ".", "pythonpath": ".", "keyfile": "", "certfile": "", "keep-alive": "5", "umask": "022",
	}
	for _, g := range gunicornOptions {
		for _, name := range g.flags {
			if name == "config" {
				continue // herd's command registers -c itself
			}
			arg := "--" + name
			if !g.bare {
				v, ok := values[name]
				if !ok {
					v = "3"
				}
				arg += "=" + v
			}
			fs := parse(t, arg) // fails the test on an unknown flag
			l, err := Resolve(fs, "")
			switch {
			case g.refuse != "":
				if err == nil || !strings.Contains(err.Error(), "--"+name) {
					t.Errorf("%s: want an error naming it, got %v", arg, err)
				}
			case g.unsupported:
				if err == nil || !strings.Contains(err.Error(), "--ignore-unsupported") {
					t.Errorf("%s: want an error pointing to --ignore-unsupported, got %v", arg, err)
				}
			case err != nil:
				t.Errorf("%s: %v", arg, err)
			case g.key != "" && isOption(g.key):
				if !strings.HasPrefix(l.Sources[g.key], "flag --") {
					t.Errorf("%s did not set --%s (source %q)", arg, g.key, l.Sources[g.key])
				}
			case g.instead != "" && (g.agrees == nil || !g.agrees(values[name])) || g.key != "":
				if len(l.Warnings) != 1 || !strings.Contains(l.Warnings[0], "--"+name) {
					t.Errorf("%s: want it in one warning, got %q", arg, l.Warnings)
				}
			}
		}
	}
}

func TestGunicornFlagMeanings(t *testing.T) {
	l, err := Resolve(parse(t, "-k", "gthread", "--threads", "4", "-t", "30", "-u", "nobody", "-g", "nogroup",
		"--preload", "--log-level", "warning", "--statsd-host", "localhost:8125", "-n", "myapp", "--access-logformat", `%(h)s "%(r)s" %(s)s`), "")
	if err != nil {
		t.Fatal(err)
	}
	c := l.Config
	if c.WorkerClass != "gthread" || c.Threads != 4 || c.Timeout.Seconds() != 30 || c.UID != "nobody" || c.GID != "nogroup" || c.LogLevel != "warn" || !c.Preload {
		t.Fatalf("config %+v", c)
	}
	if len(l.Warnings) != 1 {
		t.Fatalf("want one warning, got %q", l.Warnings)
	}
	for _, want := range []string{"--statsd-host localhost:8125 (herd has no statsd", "--name myapp"} {
		if !strings.Contains(l.Warnings[0], want) {
			t.Errorf("warning %q lacks %q", l.Warnings[0], want)
		}
	}
	if strings.Contains(l.Warnings[0], "preload") {
		t.Errorf("--preload is herd's own now, yet warned about: %q", l.Warnings[0])
	}
}

// TestWorkerClassesHerdWillNotHave: eventlet and tornado (by gunicorn's names and class
// paths) are refused with why, naming the classes herd has.
func TestWorkerClassesHerdWillNotHave(t *testing.T) {
	for class, why := range map[string]string{
		"eventlet": "removed from gunicorn 26", "gunicorn.workers.geventlet.EventletWorker": "removed from gunicorn 26",
		"tornado": "no tornado worker", "gunicorn.workers.gtornado.TornadoWorker": "no tornado worker",
	} {
		c := Defaults()
		c.App, c.WorkerClass = "app:app", class
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), why) || !strings.Contains(err.Error(), "worker classes are sync") ||
			!strings.Contains(err.Error(), "-k gthread --threads N") {
			t.Errorf("-k %s: %v", class, err)
		}
	}
}

func TestWorkerClassRefused(t *testing.T) {
	for _, class := range []string{"gevent", "eventlet", "tornado"} {
		l, err := Resolve(parse(t, "-k", class, "app:app"), "")
		if err != nil {
			t.Fatal(err)
		}
		l.Config.App = "app:app"
		err = l.Config.Validate()
		if err == nil || !strings.Contains(err.Error(), "-k sync, -k gthread") || !strings.Contains(err.Error(), class) {
			t.Errorf("-k %s: %v", class, err)
		}
	}
	for _, class := range []string{"sync", "gthread", "gunicorn.workers.gthread.ThreadWorker", "asgi", "uvicorn.workers.UvicornWorker"} {
		l, _ := Resolve(parse(t, "-k", class), "")
		l.Config.App = "app:app"
		if err := l.Config.Validate(); err != nil {
			t.Errorf("-k %s: %v", class, err)
		}
		if asgi := l.Config.WorkerClass == "asgi"; asgi != (l.Config.Interface == "asgi") {
			t.Errorf("-k %s: class %s, interface %s", class, l.Config.WorkerClass, l.Config.Interface)
		}
	}
}

func TestDaemonRefused(t *testing.T) {
	_, err := Resolve(parse(t, "-D"), "")
	if err == nil || !strings.Contains(err.Error(), "foreground") || !strings.Contains(err.Error(), "systemd") {
		t.Fatalf("-D: %v", err)
	}
}

func TestEnvTypo(t *testing.T) {
	got := envTypos([]string{"HERD_WOKERS=3", "HERD_WORKERS=2", "HERD_TEST_BINARY=x", "HERD_UPGRADE_FROM=1", "PATH=/bin"})
	if len(got) != 1 || !strings.Contains(got[0], "HERD_WOKERS") || !strings.Contains(got[0], "did you mean HERD_WORKERS?") {
		t.Fatalf("%q", got)
	}
}
