package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// app is one WSGI app the servers are loaded with.
type app struct {
	name   string // row label and -apps value
	module string // module:callable under bench/apps
	path   string // the URL path wrk requests
	// lua, when set, is wrk script code that shapes the request (a POST body ...).
	lua string
	// extra apps run only when named in -apps: they answer the 64 KiB and 1 MiB
	// targets but would double the default run.
	extra bool
	// static apps are files herd's master serves (--static), against nginx (bench/static.go).
	static bool
}

var allApps = []app{
	{name: "hello", module: "hello:app", path: "/"},
	{name: "flask", module: "flaskapp:app", path: "/hello"},
	{name: "django", module: "djangoapp:application", path: "/hello"},
	{name: "get64k", module: "payload:app", path: "/64k", extra: true},
	{name: "post1m", module: "payload:app", path: "/echo", extra: true,
		lua: "wrk.method = \"POST\"\nwrk.body = string.rep(\"x\", 1048576)\nwrk.headers[\"Content-Type\"] = \"application/octet-stream\"\n"},
	{name: "static1k", module: "hello:app", path: "/static/1k.txt", extra: true, static: true},
	{name: "static64k", module: "hello:app", path: "/static/64k.txt", extra: true, static: true},
}

// server is one way of serving an app: how to start it, and whether it can run here.
type server struct {
	key   string // -servers value
	label string // row label in the tables
	// extra servers run only when named in -servers: they answer older questions (nginx in
	// front of herd, uWSGI's router, static files) and would lengthen the default run.
	extra bool
	// debian servers are Debian 12's older releases on /usr/bin/python3 (with its older
	// Flask and Django): run with -debian or when named.
	debian bool
	// onlyHello is set for the Go net/http limit, which serves a fixed answer, not a WSGI app.
	onlyHello bool
	// onlyStatic is set for nginx serving files, which runs only the static apps.
	onlyStatic bool
	launch     func(e *env, a app) (*instance, error)
}

// env is what every launch needs: the paths of the tools and a private temp dir.
type env struct {
	root string // the repository checkout
	herd string // the herd binary
	// venv is the pinned venv of today's peers (make venv); python is its interpreter, which
	// runs herd's workers, Granian, gunicorn, uWSGI (pyuwsgi) and the in-process limit alike.
	venv   string
	python string
	// debianPython runs Debian's older peers (-debian), with Debian's Flask and Django;
	// debian says whether the run has any, for the report's versions.
	debianPython string
	debian       bool
	tmp          string // the run's private directory: sockets, nginx's files, server logs
	self         string // this program, which serves the Go net/http limit when asked to
	workers      int
	// herdUwsgi is how to give herd a uwsgi socket, "" when this herd has no --uwsgi-socket.
	herdUwsgi uwsgiSocketForm
	// commands holds the first command line of each server, for the report.
	commands map[string][]string
}

// uwsgiSocketForm says how herd's --uwsgi-socket takes an address, as its --help says.
type uwsgiSocketForm int

const (
	noUwsgiSocket uwsgiSocketForm = iota
	uwsgiSocketUnix
	uwsgiSocketTCP
)

// detectUwsgiSocket reads `herd serve --help`: the row "nginx -> herd" needs the
// --uwsgi-socket flag, which not every herd has. A help text that names unix:PATH gets a Unix
// socket (as nginx -> uWSGI uses); otherwise a loopback TCP address, which any form accepts.
func detectUwsgiSocket(herd string) uwsgiSocketForm {
	out, _ := exec.Command(herd, "serve", "--help").CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		// The flag's own line, not another flag's help that names it (--static's does).
		if strings.HasPrefix(strings.TrimSpace(line), "--uwsgi-socket ") {
			if strings.Contains(line, "unix:") {
				return uwsgiSocketUnix
			}
			return uwsgiSocketTCP
		}
	}
	return noUwsgiSocket
}

func (e *env) appDir() string { return filepath.Join(e.root, "bench", "apps") }

// bin is a program of the venv: granian, gunicorn, uwsgi.
func (e *env) bin(name string) string { return filepath.Join(e.venv, "bin", name) }

// instance is one running server: its processes (several for nginx in front of a server)
// and the URL wrk loads.
type instance struct {
	procs   []*proc
	url     string
	started time.Time
	startup time.Duration // from the first exec to the first 200
}

// notAvailable is a launch error that makes the row say "n/a: why" instead of failing the run.
type notAvailable string

func (n notAvailable) Error() string { return "n/a: " + string(n) }

var allServers = []server{
	{key: "herd", label: "herd", launch: launchHerd},
	{key: "granian", label: "Granian (WSGI)", launch: launchGranian},
	{key: "gunicorn-sync", label: "gunicorn sync", launch: launchGunicorn("sync", false)},
	{key: "gunicorn-gthread", label: "gunicorn gthread (4 threads)", launch: launchGunicorn("gthread", false)},
	{key: "uwsgi-http-socket", label: "uwsgi --http-socket", launch: launchUwsgiHTTPSocket(false)},
	{key: "nginx-uwsgi", label: "nginx -> uwsgi --socket", launch: launchNginxUwsgi},
	{key: "go-hello", label: "Go net/http hello (no Python)", onlyHello: true, launch: launchGoHello},
	{key: "nginx-herd", label: "nginx -> herd (uwsgi)", extra: true, launch: launchNginxHerd},
	{key: "nginx-herd-http", label: "nginx -> herd (HTTP keep-alive)", extra: true, launch: launchNginxHerdHTTP},
	{key: "uwsgi-http", label: "uwsgi --http (router)", extra: true, launch: launchUwsgiRouter},
	{key: "nginx-static", label: "nginx serving the files", onlyStatic: true, extra: true, launch: launchNginxStatic},
	{key: "debian-uwsgi-http-socket", label: "Debian 12's older uwsgi --http-socket", debian: true, launch: launchUwsgiHTTPSocket(true)},
	{key: "debian-gunicorn-sync", label: "Debian 12's older gunicorn sync", debian: true, launch: launchGunicorn("sync", true)},
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// noteCommand keeps the first command line under key, for the report's list of commands.
func (e *env) noteCommand(key string, args []string) {
	if _, ok := e.commands[key]; !ok {
		e.commands[key] = args
	}
}

// spawn starts one process of a server with its output in a log file of the temp dir.
func (e *env) spawn(key, name string, args []string) (*proc, error) {
	e.noteCommand(key+"/"+name, args)
	logf, err := os.OpenFile(filepath.Join(e.tmp, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("log file of %s: %w", name, err)
	}
	defer logf.Close() // the child holds its own copy
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = e.tmp
	cmd.Stdout, cmd.Stderr = logf, logf
	return running.start(name, cmd)
}

// logTail is the end of a process's log, for an error message.
func (e *env) logTail(name string) string {
	b, _ := os.ReadFile(filepath.Join(e.tmp, name+".log"))
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return strings.TrimSpace(string(b))
}

// await waits until url answers 200, failing early when a process of inst exits.
func (e *env) await(ctx context.Context, inst *instance, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, p := range inst.procs {
			if p.exited() {
				return fmt.Errorf("%s exited before answering (%v): %s", p.name, p.err, e.logTail(p.name))
			}
		}
		if resp, err := client.Get(inst.url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				inst.startup = time.Since(inst.started)
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not answer 200 within %v", inst.url, timeout)
}

// stop stops the processes of inst, the front (last started) first.
func (inst *instance) stop() {
	for i := len(inst.procs) - 1; i >= 0; i-- {
		running.stop(inst.procs[i], syscall.SIGTERM, 10*time.Second)
	}
}

// launchAll starts the given commands in order as one server and waits for its first 200.
func (e *env) launchAll(key string, a app, url string, cmds map[string][]string, order []string) (*instance, error) {
	inst := &instance{url: url + a.path, started: time.Now()}
	for _, name := range order {
		p, err := e.spawn(key, name, cmds[name])
		if err != nil {
			inst.stop()
			return nil, err
		}
		inst.procs = append(inst.procs, p)
	}
	if err := e.await(context.Background(), inst, 60*time.Second); err != nil {
		inst.stop()
		return nil, fmt.Errorf("%s with %s: %w", key, a.name, err)
	}
	return inst, nil
}

// herdArgs is herd's command: its workers on the venv's Python (--venv), as the peers.
func (e *env) herdArgs(a app, httpAddr string) []string {
	return []string{e.herd, "serve", a.module, "--chdir", e.appDir(), "--workers", fmt.Sprint(e.workers),
		"--http", httpAddr, "--venv", e.venv, "--access-log", "off", "--log-level", "warn"}
}

func launchHerd(e *env, a app) (*instance, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	static, err := e.staticArgs(a)
	if err != nil {
		return nil, err
	}
	args := append(e.herdArgs(a, addr), static...)
	return e.launchAll("herd", a, "http://"+addr, map[string][]string{"herd": args}, []string{"herd"})
}

func launchNginxHerd(e *env, a app) (*instance, error) {
	if e.herdUwsgi == noUwsgiSocket {
		return nil, notAvailable("herd has no --uwsgi-socket")
	}
	httpAddr, err := freePort()
	if err != nil {
		return nil, err
	}
	herdArgs := e.herdArgs(a, httpAddr)
	var pass string
	if e.herdUwsgi == uwsgiSocketUnix {
		sock := filepath.Join(e.tmp, "herd-uwsgi.sock")
		_ = os.Remove(sock)
		herdArgs = append(herdArgs, "--uwsgi-socket", "unix:"+sock)
		pass = "unix:" + sock
	} else {
		if pass, err = freePort(); err != nil {
			return nil, err
		}
		herdArgs = append(herdArgs, "--uwsgi-socket", pass)
	}
	return e.behindNginx("nginx-herd", a, "herd", herdArgs, pass)
}

// launchNginxHerdHTTP is nginx in front of herd's HTTP socket with keep-alive upstream
// connections (proxy_pass), as docs/deploy.md advises: nginx's uwsgi_pass opens a connection
// per request, and accepting and closing them costs herd's master more than the request.
func launchNginxHerdHTTP(e *env, a app) (*instance, error) {
	sock := filepath.Join(e.tmp, "herd-http.sock")
	_ = os.Remove(sock)
	herdArgs := e.herdArgs(a, "unix:"+sock)
	return e.behindNginxConf("nginx-herd-http", a, "herd", herdArgs, "unix:"+sock, nginxHTTPConf)
}

// uwsgiArgs is uWSGI's command: the venv's pyuwsgi (Python built in, no --plugin), or with
// debian Debian's uwsgi with its python3 plugin.
func (e *env) uwsgiArgs(a app, debian bool) []string {
	args := []string{e.bin("uwsgi")}
	if debian {
		args = []string{"uwsgi", "--plugin", "python3"}
	}
	return append(args, "--master", "--processes", fmt.Sprint(e.workers),
		"--chdir", e.appDir(), "--module", a.module, "--disable-logging", "--need-app", "--die-on-term",
		"--buffer-size", "32768")
}

func launchUwsgiHTTPSocket(debian bool) func(e *env, a app) (*instance, error) {
	return func(e *env, a app) (*instance, error) {
		addr, err := freePort()
		if err != nil {
			return nil, err
		}
		key := "uwsgi-http-socket"
		if debian {
			key = "debian-" + key
		}
		args := append(e.uwsgiArgs(a, debian), "--http-socket", addr)
		return e.launchAll(key, a, "http://"+addr, map[string][]string{"uwsgi": args}, []string{"uwsgi"})
	}
}

func launchUwsgiRouter(e *env, a app) (*instance, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	// pyuwsgi has the http router built in: no --plugin http.
	args := append(e.uwsgiArgs(a, false), "--http", addr, "--http-keepalive")
	return e.launchAll("uwsgi-http", a, "http://"+addr, map[string][]string{"uwsgi": args}, []string{"uwsgi"})
}

func launchNginxUwsgi(e *env, a app) (*instance, error) {
	sock := filepath.Join(e.tmp, "uwsgi.sock")
	_ = os.Remove(sock)
	args := append(e.uwsgiArgs(a, false), "--socket", sock)
	return e.behindNginx("nginx-uwsgi", a, "uwsgi", args, "unix:"+sock)
}

// launchGunicorn starts gunicorn from the venv (27), or with debian Debian's (20.1) under
// /usr/bin/python3. gunicorn 24+ opens a control socket in ~/.gunicorn by default, one path
// for every gunicorn of the user: --no-control-socket keeps the benchmark's instances (and
// other engineers' tests on the machine) apart.
func launchGunicorn(worker string, debian bool) func(e *env, a app) (*instance, error) {
	return func(e *env, a app) (*instance, error) {
		addr, err := freePort()
		if err != nil {
			return nil, err
		}
		key := "gunicorn-" + worker
		args := []string{e.bin("gunicorn"), "--no-control-socket"}
		if debian {
			key = "debian-" + key
			args = []string{e.debianPython, "-m", "gunicorn"}
		}
		args = append(args, "-w", fmt.Sprint(e.workers), "-b", addr, "--chdir", e.appDir())
		if worker == "gthread" {
			args = append(args, "-k", "gthread", "--threads", "4")
		}
		args = append(args, a.module)
		return e.launchAll(key, a, "http://"+addr, map[string][]string{"gunicorn": args}, []string{"gunicorn"})
	}
}

// launchGranian starts Granian as its docs and issue 18 give it: the WSGI interface, 2
// workers, every other setting its default (HTTP/1 and 2 auto, 1 runtime thread, blocking
// threads backpressure/2 = 256 per worker, no access log).
func launchGranian(e *env, a app) (*instance, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(addr)
	args := []string{e.bin("granian"), "--interface", "wsgi", "--workers", fmt.Sprint(e.workers),
		"--host", host, "--port", port, "--working-dir", e.appDir(), a.module}
	return e.launchAll("granian", a, "http://"+addr, map[string][]string{"granian": args}, []string{"granian"})
}

func launchGoHello(e *env, a app) (*instance, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	args := []string{e.self, "-go-hello", addr}
	return e.launchAll("go-hello", a, "http://"+addr, map[string][]string{"go-hello": args}, []string{"go-hello"})
}

// nginxHead and nginxTempPaths begin every nginx configuration of the benchmark: everything
// nginx writes stays in dir, and it runs as root because the benchmark does (its workers
// must reach the sockets in dir).
const (
	nginxHead = `user root;
worker_processes auto;
pid {{DIR}}/nginx.pid;
error_log {{DIR}}/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
`
	nginxTempPaths = `    client_body_temp_path {{DIR}}/client_body;
    proxy_temp_path {{DIR}}/proxy;
    fastcgi_temp_path {{DIR}}/fastcgi;
    uwsgi_temp_path {{DIR}}/uwsgi;
    scgi_temp_path {{DIR}}/scgi;
`
)

// nginxConf is the configuration nginx runs with in front of a uwsgi backend.
const nginxConf = nginxHead + nginxTempPaths + `    server {
        listen {{LISTEN}};
        location / {
            include /etc/nginx/uwsgi_params;
            uwsgi_pass {{PASS}};
        }
    }
}
`

// nginxHTTPConf is nginxConf with an HTTP/1.1 upstream whose connections nginx keeps.
const nginxHTTPConf = nginxHead + nginxTempPaths + `    upstream app {
        server {{PASS}};
        keepalive 32;
    }
    server {
        listen {{LISTEN}};
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }
    }
}
`

// behindNginx starts a uwsgi-protocol backend, then nginx in front of it with uwsgi_pass.
func (e *env) behindNginx(key string, a app, backend string, backendArgs []string, pass string) (*instance, error) {
	return e.behindNginxConf(key, a, backend, backendArgs, pass, nginxConf)
}

// behindNginxConf starts a backend, then nginx in front of it with conf (a template).
func (e *env) behindNginxConf(key string, a app, backend string, backendArgs []string, pass, template string) (*instance, error) {
	listen, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(e.tmp, "nginx-"+key)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("nginx dir: %w", err)
	}
	conf := strings.NewReplacer("{{DIR}}", dir, "{{LISTEN}}", listen, "{{PASS}}", pass).Replace(template)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("nginx config: %w", err)
	}
	nginx := []string{"nginx", "-p", dir, "-e", filepath.Join(dir, "nginx-error.log"), "-c", confPath, "-g", "daemon off;"}
	cmds := map[string][]string{backend: backendArgs, "nginx": nginx}
	return e.launchAll(key, a, "http://"+listen, cmds, []string{backend, "nginx"})
}

// serveGoHello is the Go net/http limit: the least an HTTP server in Go does per request.
func serveGoHello(addr string) error {
	body := []byte("Hello, World!")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", "13")
		_, _ = w.Write(body)
	})
	return (&http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}).ListenAndServe()
}
