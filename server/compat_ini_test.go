package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
	"github.com/herd-server/herd/supervisor/spawn"
)

// iniApp tells the test what the worker is: its pid, interpreter, a variable from env =,
// and grows its memory on /grow (for reload-on-rss).
const iniApp = `import json, os, sys, threading, time

held = []
lock = threading.Lock()
active = 0

def application(environ, start_response):
    global active
    with lock:
        active += 1
        now = active
    try:
        path = environ.get('PATH_INFO', '')
        if path == '/sleep':
            time.sleep(float(environ.get('QUERY_STRING', 's=1').split('=')[1]))
        if path == '/grow':
            held.append(bytearray(96 << 20))  # bytearray writes its zeros: RSS grows
    finally:
        with lock:
            active -= 1
    body = json.dumps({'pid': os.getpid(), 'executable': sys.executable, 'mode': os.environ.get('MODE', ''), 'active': now}).encode()
    start_response('200 OK', [('Content-Type', 'application/json'), ('Content-Length', str(len(body)))])
    return [body]
`

type iniAnswer struct {
	Pid        int    `json:"pid"`
	Executable string `json:"executable"`
	Mode       string `json:"mode"`
	Active     int    `json:"active"` // requests running in the worker, this one included
}

func getINIAnswer(t *testing.T, c *http.Client, url string) iniAnswer {
	t.Helper()
	status, body := get(t, c, url)
	var a iniAnswer
	if err := json.Unmarshal([]byte(body), &a); status != 200 || err != nil {
		t.Fatalf("GET %s: %d %q (%v)", url, status, body, err)
	}
	return a
}

// TestUWSGIIniEveryMappedOption runs one real uWSGI ini that uses the mapped options the
// other ini tests do not exercise, and checks each by what herd does: home (the venv's
// python runs the workers), pythonpath, module + callable, threads (two requests at once on
// one worker), socket (uwsgi protocol) and chmod-socket, env, pidfile, max-requests,
// touch-reload and reload-on-rss (the worker is replaced), vacuum (files gone at stop).
func TestUWSGIIniEveryMappedOption(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"lib", "venv/bin"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	python, err := spawn.ResolvePython("python3")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(python, filepath.Join(dir, "venv/bin/python")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "lib", "iniapp.py"), []byte(iniApp), 0o644); err != nil {
		t.Fatal(err)
	}
	touch := filepath.Join(dir, "touch")
	if err := os.WriteFile(touch, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	addr, uwsgiAddr := herdtest.FreeAddr(t), herdtest.FreeAddr(t)
	ini := filepath.Join(dir, "app.ini")
	text := `[uwsgi]
home = %dvenv
chdir = %d
pythonpath = %dlib
module = iniapp
callable = application
processes = 1
threads = 2
http-socket = ` + addr + `
socket = ` + uwsgiAddr + `
socket = %du.sock
chmod-socket = 666
env = MODE=from-ini
pidfile = %dherd.pid
max-requests = 30
touch-reload = %dtouch
reload-on-rss = 64
post-buffering = 8192
master = true
vacuum = true
die-on-term = true
enable-threads = true
lazy-apps = true
`
	if err := os.WriteFile(ini, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	h := herdtest.Start(t, herdtest.Options{Dir: dir, Listen: addr, Args: []string{"--ini", ini}})
	h.WaitReady(1, 20*time.Second)
	c := herdtest.Client()

	first := getINIAnswer(t, c, h.URL+"/")
	if first.Mode != "from-ini" || first.Executable != filepath.Join(dir, "venv/bin/python") {
		t.Fatalf("worker %+v: want MODE from env = and the venv's python (home =)", first)
	}
	start, _, _ := h.WaitEvent(0, 5*time.Second, herdtest.IsMsg("herd is starting"))
	if start.Int("workers") != 1 || start.Int("threads") != 2 {
		t.Fatalf("start-up line %v: want 1 worker with 2 threads", start)
	}
	// threads = 2: while a slow request runs in the only worker, another one runs beside it
	// in the same process.
	slow := make(chan int, 1)
	go func() {
		resp, err := c.Get(h.URL + "/sleep?s=3")
		if err != nil {
			slow <- -1
			return
		}
		resp.Body.Close()
		slow <- resp.StatusCode
	}()
	// Once the slow request is in the worker, the first request after it almost always runs
	// beside it (each counts towards max-requests, below).
	h.WaitServing("/sleep?s=3", 10*time.Second)
	made := 2 // the first request and the slow one
	herdtest.EventuallyNil(t, 2*time.Second, "a request running beside the slow one in the one worker (threads = 2)", func() error {
		a := getINIAnswer(t, c, h.URL+"/")
		made++
		if a.Active != 2 || a.Pid != first.Pid {
			return fmt.Errorf("worker %d: %d requests active", a.Pid, a.Active)
		}
		return nil
	})
	if status := <-slow; status != 200 {
		t.Fatalf("slow request: %d", status)
	}
	// socket =: the uwsgi protocol, over TCP and over a Unix socket of mode 0666.
	answer := uwsgiRequest(t, uwsgiAddr, "REQUEST_METHOD", "GET", "PATH_INFO", "/", "CONTENT_LENGTH", "")
	made++
	if !strings.HasPrefix(answer, "HTTP/1.1 200 OK\r\n") || !strings.Contains(answer, `"mode": "from-ini"`) {
		t.Fatalf("uwsgi request: %q", answer)
	}
	sock := filepath.Join(dir, "u.sock")
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o666 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("uwsgi unix socket: %v %v, want a socket of mode 0666", err, fi)
	}
	// pidfile =: the master's pid.
	if b, err := os.ReadFile(filepath.Join(dir, "herd.pid")); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(h.Cmd.Process.Pid) {
		t.Fatalf("pidfile: %q %v, want %d", b, err, h.Cmd.Process.Pid)
	}

	// max-requests = 30: its 30th request, not its 29th, has the worker replaced (it serves on
	// until its replacement is ready).
	reached := func(e herdtest.Event) bool {
		return e.Msg() == "worker reached --max-requests: replacing it" && e.Int("pid") == first.Pid
	}
	// served waits until the access log shows n requests: a line is written just after
	// its response.
	served := func(n int) {
		t.Helper()
		from := 0
		for i := 0; i < n; i++ {
			var ok bool
			if _, from, ok = h.WaitEvent(from, 10*time.Second, func(e herdtest.Event) bool { return e.Str("component") == "access" }); !ok {
				t.Fatalf("%d access lines, want %d", i, n)
			}
		}
	}
	for ; made < 29; made++ {
		getINIAnswer(t, c, h.URL+"/")
	}
	served(29)
	if _, _, ok := h.WaitEvent(0, 200*time.Millisecond, reached); ok {
		t.Fatal("worker replaced after 29 requests, before max-requests = 30")
	}
	getINIAnswer(t, c, h.URL+"/")
	if _, _, ok := h.WaitEvent(0, 10*time.Second, reached); !ok {
		t.Fatal("worker not replaced after 30 requests (max-requests = 30)")
	}
	if _, _, ok := h.WaitEvent(0, 20*time.Second, func(e herdtest.Event) bool {
		return e.Str("cause") == "max_requests" && e.Int("pid") == first.Pid
	}); !ok {
		t.Fatal("the worker did not leave with cause max_requests")
	}

	// touch-reload =: a new mtime reloads.
	from := len(h.Events())
	at := time.Now().Add(time.Hour)
	if err := os.Chtimes(touch, at, at); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := h.WaitEvent(from, 10*time.Second, herdtest.IsMsg("reload done")); !ok {
		t.Fatal("touching the touch-reload file did not reload")
	}

	// reload-on-rss = 64 (MiB): a worker that grows past it is replaced.
	grown := getINIAnswer(t, c, h.URL+"/grow").Pid
	if _, _, ok := h.WaitEvent(from, 10*time.Second, func(e herdtest.Event) bool {
		return e.Str("cause") == "rss" && e.Int("pid") == grown
	}); !ok {
		t.Fatalf("worker %d grew past reload-on-rss = 64 and was not recycled", grown)
	}

	// vacuum: at a graceful stop the pidfile and the socket file go.
	if err := h.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := h.Wait(20 * time.Second); code != 0 {
		t.Fatalf("exit %d after TERM", code)
	}
	for _, f := range []string{"herd.pid", "u.sock"} {
		if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
			t.Errorf("%s left after stop (%v)", f, err)
		}
	}
}

// TestUWSGISocketOnlyServesNoHTTP: an ini with only socket = (uwsgi for nginx) serves that
// socket alone, as uWSGI does: no default HTTP listener on 127.0.0.1:8000 besides.
func TestUWSGISocketOnlyServesNoHTTP(t *testing.T) {
	dir := t.TempDir()
	uwsgiAddr := herdtest.FreeAddr(t)
	ini := filepath.Join(dir, "app.ini")
	text := "[uwsgi]\nchdir = " + herdtest.ExampleDir(t) + "\nmodule = app:app\nprocesses = 1\nsocket = " + uwsgiAddr + "\n"
	if err := os.WriteFile(ini, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	r := herdtest.Run(t, dir, nil, "check", "--ini", ini)
	if r.Code != 0 || !strings.Contains(squeeze(r.Stdout), "http default (none: uwsgi-socket is set)") {
		t.Fatalf("herd check --ini: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	h := herdtest.Start(t, herdtest.Options{Dir: dir, Listen: uwsgiAddr, Args: []string{"--ini", ini}})
	h.WaitReady(1, 20*time.Second)
	start, _, _ := h.WaitEvent(0, 5*time.Second, herdtest.IsMsg("herd is starting"))
	if http, _ := start["http"].([]any); len(http) != 0 {
		t.Fatalf("start-up line %v: want no HTTP listener", start)
	}
	if uw, _ := start["uwsgi"].([]any); len(uw) != 1 || uw[0] != uwsgiAddr {
		t.Fatalf("start-up line %v: want the one uwsgi socket %s", start, uwsgiAddr)
	}
	answer := uwsgiRequest(t, uwsgiAddr, "REQUEST_METHOD", "GET", "PATH_INFO", "/", "CONTENT_LENGTH", "")
	if !strings.HasPrefix(answer, "HTTP/1.1 200 OK\r\n") || !strings.HasSuffix(answer, "Hello from herd!\n") {
		t.Fatalf("uwsgi request: %q", answer)
	}
	// The master holds no TCP listener but the uwsgi one.
	if n := tcpListeners(t, h.Cmd.Process.Pid); n != 1 {
		t.Fatalf("the master listens on %d TCP sockets, want 1 (the uwsgi socket)", n)
	}
}

// tcpListeners counts the listening TCP sockets the process holds, from /proc.
func tcpListeners(t *testing.T, pid int) int {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if link, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/fd/" + fd.Name()); err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	n := 0
	for _, table := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/net/" + table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			// local rem st ... inode: state 0A is LISTEN.
			if f := strings.Fields(line); len(f) > 9 && f[3] == "0A" && inodes[f[9]] {
				n++
			}
		}
	}
	return n
}

// TestUWSGIIniLogtoAutoreloadUid: the mapped options left over, by what they do: http = (an
// HTTP listener), logto (herd's log goes to the file, not stderr), py-autoreload (saving a
// .py file reloads) and, as root, uid and gid (the workers run as nobody).
func TestUWSGIIniLogtoAutoreloadUid(t *testing.T) {
	dir := herdtest.OpenTempDir(t) // nobody must read the app
	app := filepath.Join(dir, "ident.py")
	writeIdent := func(greeting string) {
		src := "import os\n\ndef app(environ, start_response):\n" +
			"    start_response('200 OK', [('Content-Type', 'text/plain')])\n" +
			"    return [b'" + greeting + " uid=%d gid=%d' % (os.getuid(), os.getgid())]\n"
		if err := os.WriteFile(app, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeIdent("first")
	addr := herdtest.FreeAddr(t)
	logFile := filepath.Join(dir, "herd.log")
	text := "[uwsgi]\nchdir = %d\nmodule = ident:app\nprocesses = 1\nhttp = " + addr + "\nlogto = " + logFile + "\npy-autoreload = 1\n"
	want := "uid=0 gid=0"
	if os.Geteuid() == 0 {
		text += "uid = nobody\ngid = nogroup\n"
		want = "uid=65534 gid=65534"
	} else {
		want = "uid=" + strconv.Itoa(os.Getuid()) + " gid=" + strconv.Itoa(os.Getgid())
	}
	ini := filepath.Join(dir, "app.ini")
	if err := os.WriteFile(ini, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	// /usr/bin/python3: the pyenv one under /root is closed to nobody.
	h := herdtest.Start(t, herdtest.Options{Dir: dir, Listen: addr, Env: []string{"HERD_PYTHON=/usr/bin/python3"}, Args: []string{"--ini", ini}})
	waitLog := func(what string) {
		t.Helper()
		herdtest.EventuallyNil(t, 30*time.Second, fmt.Sprintf("%q in %s", what, logFile), func() error {
			b, _ := os.ReadFile(logFile)
			if strings.Contains(string(b), what) {
				return nil
			}
			if !h.Running() {
				t.Fatalf("herd exited; %s has no %q:\n%s", logFile, what, b)
			}
			return fmt.Errorf("it has:\n%s", b)
		})
	}
	waitLog(`"message":"worker ready"`)
	if len(h.Events()) != 0 {
		t.Fatalf("logto: herd still logs to stderr: %v", h.Events())
	}
	c := herdtest.Client()
	if status, body := get(t, c, h.URL+"/"); status != 200 || body != "first "+want {
		t.Fatalf("GET /: %d %q, want %q", status, body, "first "+want)
	}
	writeIdent("second")
	waitLog(msgChangeDetected)
	waitForBody(t, c, h.URL+"/", "second "+want, 30*time.Second, true)
}
