// Package config holds herd's one Config. Every option is a field of Config whose struct tags
// give its key, default and help; the command-line flags, the HERD_* environment names and
// the config-file keys are all derived from those tags, so no option is spelled twice.
//
// Precedence: flag > environment > config file > default.
package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is every setting of `herd serve`.
type Config struct {
	// The app.
	App        string   `key:"app" doc:"the WSGI app as module:callable (callable defaults to application); also the first argument of serve" help:"the WSGI app, module:callable; also serve's argument" section:"The app"`
	Chdir      string   `key:"chdir" doc:"directory to change to before loading the app (it is put first on sys.path)" help:"directory to load the app from (first on sys.path)"`
	PythonPath []string `key:"pythonpath" doc:"directory to add to sys.path before loading the app (repeatable)" help:"directory to add to sys.path (repeatable)"`
	Python     string   `key:"python" default:"python3" doc:"Python interpreter that runs the workers" help:"Python interpreter of the workers"`
	Venv       string   `key:"venv" doc:"virtualenv directory; its bin/python runs the workers unless --python is given" help:"virtualenv whose bin/python runs the workers"`
	Env        []string `key:"env" short:"e" list:"whole" doc:"environment variable KEY=VALUE for the workers (repeatable)" help:"KEY=VALUE for the workers' environment (repeatable)"`
	Mount      string   `key:"mount" doc:"/PREFIX=module:callable (or /PREFIX for the app given otherwise): serve the app under PREFIX, with SCRIPT_NAME=PREFIX and PATH_INFO the rest; other paths get 404. One app per herd: run one herd per app to mount several" help:"/PREFIX=module:callable: serve the app under PREFIX"`

	// Listening.
	HTTP              []string      `key:"http" short:"b" alias:"bind" default:"127.0.0.1:8000" doc:"HTTP listen address HOST:PORT or unix:PATH (repeat or comma-separate for several)" help:"HTTP address HOST:PORT or unix:PATH (repeatable)" section:"Listening"`
	HTTPS             []string      `key:"https" doc:"HTTPS listen address HOST:PORT (repeat or comma-separate for several): TLS 1.2 or newer, HTTP/2 and HTTP/1.1 chosen by ALPN; needs --cert and --key; given alone (no --http), no plain HTTP listener opens" help:"HTTPS address HOST:PORT (repeatable; needs --cert, --key)"`
	Cert              string        `key:"cert" alias:"certfile" doc:"TLS certificate file (PEM, the server's certificate first, then its chain) for --https; read again on SIGHUP and herd reload" help:"TLS certificate chain file (PEM) for --https"`
	Key               string        `key:"key" alias:"keyfile" doc:"TLS private key file (PEM) of --cert; read again with it" help:"TLS private key file (PEM) of --cert"`
	H2C               bool          `key:"h2c" default:"false" doc:"also serve cleartext HTTP/2 (prior knowledge, as h2load and curl --http2-prior-knowledge send it) on the --http listeners; off by default, since a proxy in front usually speaks HTTP/1.1" help:"also serve cleartext HTTP/2 on --http"`
	UwsgiSocket       []string      `key:"uwsgi-socket" doc:"uwsgi protocol listen address unix:PATH or HOST:PORT, for nginx's uwsgi_pass or any uwsgi client (repeatable); with it and no --http from any source, herd serves no HTTP" help:"uwsgi protocol address for nginx's uwsgi_pass (repeatable)"`
	UwsgiSocketMode   string        `key:"uwsgi-socket-mode" default:"0660" doc:"permissions of a --uwsgi-socket Unix socket file, in octal" help:"permissions of a --uwsgi-socket Unix socket (octal)"`
	ProxyProtocol     []string      `key:"proxy-protocol" doc:"listeners that require a PROXY protocol v1/v2 header (from HAProxy or a cloud balancer) and take REMOTE_ADDR from it: an --http address, a socket-activated socket's name, or * for all; connections without a valid header are refused" help:"listeners that require a PROXY protocol header (* for all)"`
	ForwardedAllowIPs []string      `key:"forwarded-allow-ips" default:"127.0.0.1,::1" doc:"peers (IP addresses, CIDR prefixes, or * for all) whose X-Forwarded-For, X-Forwarded-Proto and Forwarded headers set REMOTE_ADDR and the scheme; from any other peer those, X-Real-IP and every X-Forwarded-* header are stripped" help:"peers whose X-Forwarded-*/Forwarded headers are believed"`
	MaxConnections    int           `key:"max-connections" default:"10000" doc:"most client connections the master holds open at once, over every HTTP, HTTPS and uwsgi listener together; more wait in the kernel's listen backlog until one closes. Lowered at start to what the open-file limit allows: past what the master keeps for itself (its listeners and logs, and each worker's sockets, pipes and control channel, twice over for a reload), half of RLIMIT_NOFILE goes to connections and half to the temporary files requests hold (a spilled body, a spooled answer); 0 means no limit but that" help:"most client connections held open at once"`
	KeepAlive         time.Duration `key:"keep-alive" default:"75s" doc:"how long an idle HTTP keep-alive connection is kept open (a bare number means seconds)" help:"how long an idle keep-alive connection stays open"`
	HeaderTimeout     time.Duration `key:"header-timeout" default:"30s" doc:"how long an HTTP client may take to send a request head: the first from its connection (a slower one is closed), each later one on a kept-alive connection from its first byte (a slower one gets 408 and a close). Bounds slowloris; 0 means no limit" help:"how long a client may take to send a request head"`
	BodyTimeout       time.Duration `key:"body-timeout" default:"60s" doc:"how long a client may pause while it sends a request body (nginx's client_body_timeout), over HTTP/1, HTTP/2 and the uwsgi socket alike: a body that stops coming for this long is given up (408, or the connection or stream closed) before any worker saw the request; one that keeps coming, however slowly, is read whole; 0 means no limit" help:"how long a client may pause while sending a request body"`
	SendTimeout       time.Duration `key:"send-timeout" default:"60s" doc:"how long an answer may make no progress toward its client (nginx's send_timeout): a client that takes none of it for this long has its connection (HTTP/1, uwsgi) or its stream (HTTP/2) closed, and whatever the answer held is let go: the worker streaming it, its spool file. The clock restarts whenever the client takes bytes, so a slow but steady reader is not cut; 0 means no limit" help:"how long an answer may make no progress toward its client"`

	// Worker processes.
	Workers           int           `key:"workers" short:"w" default:"0" doc:"number of worker processes; 0 means one per CPU core" help:"worker processes; 0 means one per CPU core" section:"Worker processes"`
	WorkerClass       string        `key:"worker-class" short:"k" default:"sync" doc:"what kind of worker serves the app. sync: one request at a time per thread of --threads, as gunicorn's sync; gthread: the same with --threads N (gunicorn's thread worker); asgi (gunicorn's asgi, uvicorn.workers.UvicornWorker): an asyncio worker (uvloop when the venv has it) serving up to --worker-connections requests at once of an ASGI app. A sync or gthread worker given an ASGI app (--interface auto) serves it as asgi. gevent, eventlet and tornado are not supported yet: herd refuses them rather than run the app otherwise" help:"worker class: sync, gthread or asgi (gunicorn's -k)"`
	Interface         string        `key:"interface" default:"auto" enum:"auto,wsgi,asgi" doc:"what the app speaks: auto finds out at import (an ASGI 3 callable, a coroutine function or an object with an async __call__, is ASGI; anything else WSGI); asgi also takes an ASGI 2 app (a class, app(scope) then instance(receive, send)); -k asgi means asgi" help:"the app's interface: auto, wsgi or asgi"`
	WorkerConnections int           `key:"worker-connections" default:"1000" doc:"requests one asgi worker serves at once (gunicorn's and uvicorn's name): the master dispatches by free slots, this many per asgi worker" help:"requests an asgi worker serves at once"`
	Threads           int           `key:"threads" default:"1" doc:"threads per worker: requests one worker serves at once" help:"threads per worker: requests one worker serves at once"`
	Preload           bool          `key:"preload" default:"false" doc:"import the app once, in a fork server (a Python process of herd's), and fork the workers from it (gunicorn's --preload and preload_app; what uWSGI does unless lazy-apps): the workers share the memory of what the app imported (gc.freeze() before each fork keeps their collections from copying it), and a dead worker is replaced in milliseconds. A reload imports the new code in a new fork server and forks the new generation from it; code that does not import keeps the old generation serving. gunicorn.conf.py's pre_fork, post_fork and post_worker_init run. What the app opens or starts at import (connections, threads) is shared by every worker, as under gunicorn --preload" help:"import the app once and fork the workers from it"`
	BootTimeout       time.Duration `key:"boot-timeout" default:"60s" doc:"a worker that has not loaded the app by then is killed" help:"a worker not ready by then is killed"`
	GracefulTimeout   time.Duration `key:"graceful-timeout" default:"30s" doc:"on stop, how long requests in flight may take before workers are killed" help:"on stop and reload, how long requests in flight may take"`
	Timeout           time.Duration `key:"timeout" short:"t" default:"0s" doc:"a request still running after this long gets 504; its worker dumps every thread's stack to the log and is killed and replaced; 0 means no limit" help:"a request running longer gets 504 and its worker is replaced"`
	MaxRequests       int           `key:"max-requests" default:"0" doc:"recycle a worker after it served this many requests (it is replaced before it leaves); 0 means never" help:"recycle a worker after this many requests; 0 never"`
	MaxRequestsJitter int           `key:"max-requests-jitter" default:"0" doc:"add a random 0..N to each worker's --max-requests so that workers do not recycle all at once" help:"add 0..N to each worker's --max-requests"`
	MaxLifetime       time.Duration `key:"max-lifetime" default:"0s" doc:"recycle a worker after it has lived this long (plus up to 10% jitter); 0 means never" help:"recycle a worker after it lived this long; 0 never"`
	ReloadOnRSS       int           `key:"reload-on-rss" default:"0" doc:"recycle a worker whose resident memory exceeds this many MiB (checked every second from /proc); 0 means never" help:"recycle a worker over this many MiB of memory; 0 never"`
	ChainReload       bool          `key:"chain-reload" default:"false" doc:"on reload, replace one worker at a time (at most one extra process) instead of starting a whole new generation at once" help:"on reload, replace one worker at a time"`
	UID               string        `key:"uid" short:"u" doc:"run the workers as this user (name or number; the master stays root and only root may set it); the workers start from a copy of herd's worker code in the temporary directory, since they cannot read the master's runtime directory; the interpreter and the app must be readable by that user" help:"run the workers as this user (root only)"`
	GID               string        `key:"gid" short:"g" doc:"run the workers with this group (name or number) as their only group; only root may set it" help:"run the workers with this group (root only)"`
	Umask             string        `key:"umask" short:"m" doc:"file mode creation mask (octal, e.g. 022) the master sets at start, before it creates files and sockets; empty keeps the inherited one" help:"file mode creation mask of the master (octal)"`
	AttachDaemon      []string      `key:"attach-daemon" list:"whole" doc:"a command (run by /bin/sh -c, in --chdir, with the workers' environment) that herd starts with the master, restarts with backoff when it exits, and stops (TERM, then KILL after --graceful-timeout) when the master stops: a Celery worker, a queue consumer (uWSGI's attach-daemon). Shown in herd status; its output goes to herd's log (repeatable)" help:"command herd starts, restarts and stops with it (repeatable)"`
	SmartAttachDaemon []string      `key:"smart-attach-daemon" list:"whole" doc:"PIDFILE COMMAND: like --attach-daemon for a command that puts itself in the background and writes its pid to PIDFILE (uWSGI's smart-attach-daemon): herd follows the process the pidfile names, starts the command again when it is gone, and stops that process with the master (repeatable)" help:"PIDFILE COMMAND: a daemon herd supervises by its pidfile (repeatable)"`

	// Requests and responses.
	QueueSize             int           `key:"queue-size" default:"1024" doc:"requests that may wait for a free worker before new ones get 503" help:"requests that may wait for a free worker before 503" section:"Requests and responses"`
	QueueTimeout          time.Duration `key:"queue-timeout" default:"30s" doc:"how long a request waits for a free worker before it gets 503" help:"how long a request waits for a free worker before 503"`
	Pipeline              bool          `key:"pipeline" default:"false" doc:"removed: accepted so that configurations that name it still load, and ignored with a warning; herd sends a request only to a free worker slot, never behind another request on a busy worker" help:"removed: ignored with a warning"`
	BodyBuffer            Size          `key:"body-buffer" default:"1MiB" doc:"request bodies up to this size are held in memory; larger ones spill to a temporary file" help:"request bodies up to this size stay in memory"`
	BodyMemory            Size          `key:"body-memory" default:"128MiB" doc:"memory for request bodies, and answers over 64 KiB read whole (--response-buffer), across all requests: the buffers they are read into, counted by their real size (a power of two from 4 KiB: a body of 513 KiB takes 1 MiB) with the ones kept for reuse. Past it a request body spills to a temporary file even under --body-buffer and an answer goes through a spool file, so many concurrent uploads or large answers cannot grow the master without bound; 0 means no bound" help:"memory for bodies across all requests; 0 no bound"`
	MaxBodySize           Size          `key:"max-body-size" default:"1GiB" doc:"larger request bodies are refused with 413, as Apache's LimitRequestBody (1 GiB since 2.4.54; nginx's client_max_body_size is 1m, gunicorn and uWSGI have no limit): a body over --body-buffer is written to a temporary file, so this bounds the disk one request takes (--temp-space bounds them all together); 0 means no limit" help:"larger request bodies get 413; 0 no limit"`
	TempSpace             Size          `key:"temp-space" default:"4GiB" doc:"most bytes herd's temporary files hold at once, across all requests: spilled request bodies and spooled answers (in the runtime directory under TMPDIR). A body that would pass it gets 503 and an answer goes through as the client reads instead of through a spool file; a disk that fills up first gets a body 507, and an answer whose spool cannot be written goes on straight from the worker; 0 means no bound but the disk's" help:"most bytes in temporary files at once; 0 no bound"`
	ResponseBuffer        Size          `key:"response-buffer" default:"1MiB" doc:"responses with a Content-Length up to this size are read whole from the worker before the client gets them, so a slow client holds no worker; larger ones are spooled to a file (--response-spool); streaming ones (no length, text/event-stream, or the app's X-Accel-Buffering: no) go through as the client reads" help:"answers up to this size are read whole from the worker"`
	ResponseSpool         Size          `key:"response-spool" default:"1GiB" doc:"responses with a Content-Length over --response-buffer and up to this size go through an unlinked temporary file (as nginx's proxy temp files): written as fast as the worker sends, sent from as fast as the client reads, so a slow client of a large answer holds no worker either; larger ones go through as the client reads; 0 turns spooling off" help:"larger answers up to this size go through a temporary file"`
	LimitRequestLine      int           `key:"limit-request-line" default:"4094" doc:"longest request line in bytes (gunicorn's limit): longer ones get 414; 0 means herd's ceiling, which also bounds the others: a head of at most 68 KiB (what a uwsgi packet to a worker carries)" help:"longest request line in bytes (414 past it)"`
	LimitRequestFields    int           `key:"limit-request-fields" default:"100" doc:"most header fields in one request (gunicorn's limit): more get 431; 0 means herd's ceiling, which also bounds the others: a head of at most 68 KiB (what a uwsgi packet to a worker carries)" help:"most header fields in a request (431 past it)"`
	LimitRequestFieldSize int           `key:"limit-request-field-size" default:"8190" doc:"longest header field line in bytes (gunicorn's limit): longer ones get 431; 0 means herd's ceiling, which also bounds the others: a head of at most 68 KiB (what a uwsgi packet to a worker carries)" help:"longest header line in bytes (431 past it)"`
	AddHeader             []string      `key:"add-header" list:"whole" doc:"a response header 'Name: value' added to every response herd sends (the app's, static files, herd's own errors) unless the app's answer has that header already, as uWSGI's add-header (repeatable)" help:"'Name: value' added to every response (repeatable)"`

	// Static files.
	Static               []string `key:"static" list:"whole" doc:"/PREFIX=DIR: the master serves GET and HEAD of the files under DIR at /PREFIX/... itself (sendfile, ETag, Range, precompressed .br/.gz siblings); a path that is not a file there goes to the app, as uWSGI's static-map; a relative DIR is taken from --chdir (repeatable; HTTP and HTTPS front ends, not --uwsgi-socket)" help:"/PREFIX=DIR: the master serves DIR's files at /PREFIX (repeatable)" section:"Static files"`
	StaticFollowSymlinks bool     `key:"static-follow-symlinks" default:"false" doc:"serve symlinks under a --static DIR that resolve outside it (refused with 404 by default)" help:"serve symlinks that lead outside a --static DIR"`
	StaticCache          Size     `key:"static-cache" default:"8MiB" doc:"files up to 64 KiB under each --static DIR are kept in memory up to this total, and served while a stat of their path shows them unchanged (inode, size, modification and change times); 0 reads every file from disk" help:"memory for small --static files"`

	// Development.
	Reload       bool     `key:"reload" default:"false" doc:"development mode: reload when a .py file under the app's directory changes, and show import errors in the browser" help:"reload when the code changes; errors in the browser" section:"Development"`
	ReloadExtra  []string `key:"reload-extra" doc:"with --reload, also reload when these change: a file, a directory or a glob such as 'templates/**/*.html' (repeatable)" help:"with --reload, also watch these files, dirs or globs"`
	ReloadEngine string   `key:"reload-engine" default:"auto" enum:"auto,inotify,poll" doc:"how --reload notices changes: inotify, falling back to polling at the inotify watch limit (auto); inotify only; or polling" help:"how --reload notices changes"`
	TouchReload  string   `key:"touch-reload" doc:"reload gracefully when this file's modification time changes (touch it after a deploy)" help:"reload when this file's modification time changes"`

	// Logging.
	LogLevel        string `key:"log-level" default:"info" enum:"debug,info,warn,error" synonyms:"warning=warn,critical=error" doc:"least severe log level written" help:"least severe level logged" section:"Logging"`
	LogFormat       string `key:"log-format" default:"auto" enum:"auto,console,json" doc:"log format: console on a terminal and json otherwise when auto" help:"log format: console on a terminal, else json, when auto"`
	LogFile         string `key:"log-file" alias:"error-logfile" default:"-" doc:"where the main log goes: - for stderr, or a file path (appended to)" help:"main log: - for stderr, or a file"`
	AccessLog       string `key:"access-log" alias:"access-logfile" default:"-" doc:"where access lines go: - for the main log, a file path, or off" help:"access log: - for the main log, a file, or off"`
	AccessLogFormat string `key:"access-log-format" default:"json" doc:"access line format: combined (Apache/nginx), common, json, or a template of {fields} such as '{remote_host} {method} {uri} {status} {duration_ms}'" help:"access line format: combined, common, json or a template"`

	// Control and observability.
	Admin            string   `key:"admin" doc:"serve /metrics, /healthz, /readyz, /stats and the dashboard on this address: loopback HOST:PORT or unix:PATH; off when empty" help:"serve /metrics, /stats, health and the dashboard here" section:"Control and observability"`
	AdminAllowRemote bool     `key:"admin-allow-remote" default:"false" doc:"let --admin bind a non-loopback address (the admin pages show what the app is doing: put them behind a firewall)" help:"let --admin bind a non-loopback address"`
	AdminHosts       []string `key:"admin-hosts" doc:"host names the admin server answers to besides localhost and IP addresses (a Host header naming any other is refused with 421, against DNS rebinding): the name a remote Prometheus or a proxy uses (repeatable)" help:"other host names the admin server answers to"`
	AdminShowQuery   bool     `key:"admin-show-query" default:"false" doc:"show the query strings of the requests in flight on /stats and the dashboard (they may carry tokens: by default /stats shows ?... in their place; herd status always shows them)" help:"show query strings on /stats and the dashboard"`
	ControlSocket    string   `key:"control-socket" doc:"path of the master's control socket (herd status, reload, stop); default: control.sock in the runtime directory, found through $XDG_RUNTIME_DIR/herd or /tmp/herd-UID" help:"path of the control socket (herd status, reload, stop)"`
	Pidfile          string   `key:"pidfile" short:"p" doc:"write the master's pid (decimal and a newline) to this file at start, atomically; removed at exit unless a newer master (USR2) rewrote it. herd status/stop --pidfile read it" help:"write the master's pid to this file"`

	// The master.
	ShutdownDelay     time.Duration `key:"shutdown-delay" default:"0s" doc:"on SIGTERM, keep accepting new connections this long (while /readyz says 503) before closing the listeners, so a Kubernetes Service stops routing here first" help:"on TERM, keep accepting this long before closing listeners" section:"The master"`
	MasterProcs       int           `key:"master-procs" default:"0" doc:"CPU cores the master's Go runtime schedules on (GOMAXPROCS); 0 means half of them, at least one, unless the GOMAXPROCS environment variable says otherwise: the Python workers need the rest, and a master with fewer schedulers spends less CPU per request waking them" help:"CPU cores the master's Go runtime uses; 0 half"`
	IgnoreUnsupported bool          `key:"ignore-unsupported" default:"false" doc:"a uWSGI or gunicorn config that asks for work herd does not do (uWSGI cron, spooler, mules, routes, hooks; gunicorn dirty arbiters) stops the start with an error naming those options; with this, herd starts without them and names them in a warning" help:"start even when a foreign config asks for work herd does not do"`

	// GunicornHooks is the gunicorn config file whose fork hooks (pre_fork, post_fork,
	// post_worker_init) the fork server runs under --preload: set by the loader when the
	// file defines them. It is no option of its own.
	GunicornHooks string
}

// Defaults returns a Config with every option at its default.
func Defaults() Config {
	var c Config
	for _, o := range Options() {
		if err := o.set(&c, o.Default); err != nil {
			panic(fmt.Sprintf("config: default of %s: %v", o.Key, err))
		}
	}
	return c
}

// Validate checks values that parse but make no sense, and fills derived defaults. Each error
// names the key and what it accepts.
func (c *Config) Validate() error {
	var errs []string
	add := func(key, format string, args ...any) {
		errs = append(errs, fmt.Sprintf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if err := c.applyMount(); err != nil {
		add("mount", "%v", err)
	}
	if c.App == "" {
		add("app", "missing: give the WSGI app as module:callable, e.g. herd serve hello:app")
	} else if !validAppSpec(c.App) {
		add("app", "%q is not module:callable (a dotted Python module, optionally :name)", c.App)
	}
	if c.Chdir != "" {
		// Absolute, so that the worker (which starts in it) and every later respawn
		// agree on it whatever directory they start from.
		abs, err := filepath.Abs(c.Chdir)
		if st, statErr := os.Stat(abs); err != nil || statErr != nil || !st.IsDir() {
			add("chdir", "%q is not a directory", c.Chdir)
		} else {
			c.Chdir = abs
		}
	}
	for _, e := range c.ForwardedAllowIPs {
		if _, errAddr := netip.ParseAddr(e); e != "*" && errAddr != nil {
			if _, errPrefix := netip.ParsePrefix(e); errPrefix != nil {
				add("forwarded-allow-ips", "%q is not an IP address, a CIDR prefix or *", e)
			}
		}
	}
	if len(c.HTTP) == 0 && len(c.UwsgiSocket) == 0 && len(c.HTTPS) == 0 {
		add("http", "at least one listen address is needed (--http, --https or --uwsgi-socket)")
	}
	checkAddresses("http", c.HTTP, "herd.sock", add)
	checkAddresses("uwsgi-socket", c.UwsgiSocket, "herd-uwsgi.sock", add)
	checkAddresses("https", c.HTTPS, "herd-tls.sock", add)
	c.checkTLS(add)
	if _, err := c.UwsgiSocketFileMode(); err != nil {
		add("uwsgi-socket-mode", "%v", err)
	}
	for _, e := range c.Env {
		if name, _, ok := strings.Cut(e, "="); !ok || name == "" {
			add("env", "%q is not KEY=VALUE", e)
		}
	}
	if c.KeepAlive < 0 {
		add("keep-alive", "%s: must not be negative (0 closes idle connections at once)", c.KeepAlive)
	}
	if c.Workers < 0 {
		add("workers", "%d: must be 0 (one per CPU core) or more", c.Workers)
	}
	if c.Workers == 0 {
		c.Workers = runtime.NumCPU()
	}
	if c.Threads < 1 {
		add("threads", "%d: must be 1 or more", c.Threads)
	}
	c.checkForeign(add)
	if c.QueueSize < 0 {
		add("queue-size", "%d: must be 0 or more", c.QueueSize)
	}
	for key, d := range map[string]time.Duration{"queue-timeout": c.QueueTimeout, "boot-timeout": c.BootTimeout, "graceful-timeout": c.GracefulTimeout} {
		if d <= 0 {
			add(key, "%s: must be a positive duration such as 30s", d)
		}
	}
	for key, d := range map[string]time.Duration{"timeout": c.Timeout, "max-lifetime": c.MaxLifetime, "send-timeout": c.SendTimeout, "body-timeout": c.BodyTimeout} {
		if d < 0 {
			add(key, "%s: must be 0 (off) or a positive duration", d)
		}
	}
	for key, n := range map[string]int{"max-requests": c.MaxRequests, "max-requests-jitter": c.MaxRequestsJitter, "reload-on-rss": c.ReloadOnRSS} {
		if n < 0 {
			add(key, "%d: must be 0 (off) or more", n)
		}
	}
	if c.Admin != "" && !strings.HasPrefix(c.Admin, "unix:") {
		if _, _, err := net.SplitHostPort(c.Admin); err != nil {
			add("admin", "%q is not HOST:PORT or unix:PATH (e.g. 127.0.0.1:9180)", c.Admin)
		}
	}
	if c.MaxConnections < 0 {
		add("max-connections", "%d: must be 0 (only the open-file limit) or more", c.MaxConnections)
	}
	if c.HeaderTimeout < 0 {
		add("header-timeout", "%s: must be 0 (off) or a positive duration such as 30s", c.HeaderTimeout)
	}
	if c.ShutdownDelay < 0 {
		add("shutdown-delay", "%s: must be 0 or a positive duration such as 5s", c.ShutdownDelay)
	}
	for key, n := range map[string]int{"limit-request-line": c.LimitRequestLine, "limit-request-fields": c.LimitRequestFields, "limit-request-field-size": c.LimitRequestFieldSize} {
		if n < 0 {
			add(key, "%d: must be 0 (herd's ceiling) or more", n)
		}
	}
	if c.MasterProcs < 0 {
		add("master-procs", "must not be negative")
	}
	if c.BodyBuffer < 0 || c.MaxBodySize < 0 || c.ResponseBuffer < 0 || c.BodyMemory < 0 || c.TempSpace < 0 {
		add("body-buffer", "sizes must not be negative")
	}
	for i, spec := range c.Static {
		if resolved, err := c.resolveStatic(spec); err != nil {
			add("static", "%v", err)
		} else {
			c.Static[i] = resolved
		}
	}
	if c.Venv != "" && c.Python == "python3" {
		c.Python = strings.TrimRight(c.Venv, "/") + "/bin/python"
	}
	if _, err := exec.LookPath(c.Python); err != nil {
		add("python", "%q cannot be run: %v", c.Python, err)
	}
	if len(errs) > 0 {
		slices.Sort(errs)
		return fmt.Errorf("invalid configuration:\n  %s", strings.Join(errs, "\n  "))
	}
	return nil
}

// checkForeign checks the options that gunicorn's and uWSGI's settings come in by.
func (c *Config) checkForeign(add func(key, format string, args ...any)) {
	c.checkWorkerClass(add)
	c.ProxyProtocol = gunicornProxyModes(c.ProxyProtocol)
	for _, h := range c.AddHeader {
		if name, _, ok := strings.Cut(h, ":"); !ok || strings.TrimSpace(name) == "" || strings.ContainsAny(strings.TrimSpace(name), " \t\r\n") {
			add("add-header", "%q is not 'Name: value'", h)
		}
	}
	for _, d := range c.SmartAttachDaemon {
		if pidfile, cmd, ok := strings.Cut(strings.TrimSpace(d), " "); !ok || pidfile == "" || strings.TrimSpace(cmd) == "" {
			add("smart-attach-daemon", "%q is not PIDFILE COMMAND", d)
		}
	}
}

// WorkerClasses are the --worker-class values herd has, with gunicorn's class paths for them.
var WorkerClasses = map[string]string{
	"sync": "sync", "gthread": "gthread", "asgi": "asgi",
	"gunicorn.workers.sync.SyncWorker": "sync", "gunicorn.workers.gthread.ThreadWorker": "gthread",
	"gunicorn.workers.gasgi.ASGIWorker": "asgi", "uvicorn.workers.UvicornWorker": "asgi",
	"uvicorn.workers.UvicornH11Worker": "asgi", "uvicorn_worker.UvicornWorker": "asgi",
}

// refusedWorkerClasses are gunicorn's classes herd will not have, with why.
var refusedWorkerClasses = map[string]string{
	"eventlet": noEventlet,
	"gunicorn.workers.geventlet.EventletWorker": noEventlet,
	"tornado": noTornado,
	"gunicorn.workers.gtornado.TornadoWorker": noTornado,
}

const (
	noEventlet = "eventlet was removed from gunicorn 26 (eventlet itself is retired) and herd has no eventlet worker"
	noTornado  = "herd has no tornado worker (gunicorn's runs Tornado applications: serve those with Tornado's own server)"
)

// checkWorkerClass takes sync, gthread and asgi (gunicorn's and uvicorn's class paths too),
// and refuses the classes herd does not have yet rather than run the app in another way
// than it was written for: a gevent app served by sync workers would block where it
// expects to yield. An asgi class makes the interface asgi unless it was set.
func (c *Config) checkWorkerClass(add func(key, format string, args ...any)) {
	class, ok := WorkerClasses[c.WorkerClass]
	if why, refused := refusedWorkerClasses[c.WorkerClass]; refused {
		add("worker-class", "%q: %s. herd's worker classes are sync (one request at a time), gthread (--threads N) and asgi (an ASGI app): use -k sync, -k gthread --threads N, or -k asgi", c.WorkerClass, why)
		return
	}
	if !ok {
		add("worker-class", "%q is not supported yet: herd's workers are sync (one request at a time), gthread (--threads N) and asgi (an ASGI app, --worker-connections at once); gevent, eventlet and tornado workers are not built yet. Use -k sync, -k gthread --threads N, or -k asgi", c.WorkerClass)
		return
	}
	c.WorkerClass = class
	if class == "asgi" && c.Interface == "auto" {
		c.Interface = "asgi"
	}
	if class == "asgi" && c.Interface == "wsgi" {
		add("interface", "wsgi with -k %s: an asgi worker serves ASGI apps; use -k sync or gthread for a WSGI app", c.WorkerClass)
	}
	if c.WorkerConnections < 1 {
		add("worker-connections", "%d: must be 1 or more", c.WorkerConnections)
	}
}

// gunicornProxyModes reads gunicorn's --proxy-protocol modes: v1, v2 and auto take the PROXY
// header on every listener, off on none.
func gunicornProxyModes(list []string) []string {
	var out []string
	for _, p := range list {
		switch strings.ToLower(p) {
		case "off":
		case "v1", "v2", "auto", "on", "true":
			out = append(out, "*")
		default:
			out = append(out, p)
		}
	}
	return out
}

// checkTLS requires --cert and --key together with --https, and only with it: TLS is
// served on the --https addresses alone, so gunicorn's `-b ADDR --certfile F` must not
// quietly serve plain HTTP. Whether the files hold a matching pair is checked when the
// master loads them, before it listens.
func (c *Config) checkTLS(add func(key, format string, args ...any)) {
	if len(c.HTTPS) > 0 {
		if c.Cert == "" {
			add("cert", "missing: --https needs --cert FILE (PEM certificate chain) and --key FILE")
		}
		if c.Key == "" {
			add("key", "missing: --https needs --key FILE (PEM private key) and --cert FILE")
		}
		return
	}
	for key, v := range map[string]string{"cert": c.Cert, "key": c.Key} {
		if v != "" {
			add(key, "given without --https: herd serves TLS only on --https addresses (gunicorn's -b ADDR --certfile F is --https ADDR --cert F)")
		}
	}
}

func checkAddresses(key string, addrs []string, example string, add func(key, format string, args ...any)) {
	for _, a := range addrs {
		if path, ok := strings.CutPrefix(a, "unix:"); ok {
			if path == "" {
				add(key, "%q has no path (e.g. unix:/run/%s)", a, example)
			}
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			add(key, "%q is not HOST:PORT or unix:PATH (e.g. 127.0.0.1:8000, :8000 or unix:/run/%s)", a, example)
		}
	}
}

// UwsgiSocketFileMode is --uwsgi-socket-mode as permission bits.
func (c *Config) UwsgiSocketFileMode() (os.FileMode, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(c.UwsgiSocketMode), 8, 32)
	if err != nil || n > 0o777 {
		return 0, fmt.Errorf("%q is not octal permission bits such as 0660 or 0666", c.UwsgiSocketMode)
	}
	return os.FileMode(n), nil
}

// MountPrefix is the path prefix of --mount without a trailing slash; "" when the app is
// served at the root.
func (c *Config) MountPrefix() string {
	prefix, _, _ := strings.Cut(c.Mount, "=")
	return strings.TrimRight(strings.TrimSpace(prefix), "/")
}

// StaticMap is one --static mount: URL paths under Prefix map to files under Path. When Path
// is a regular file (uWSGI's `static-map = /favicon.ico=/srv/favicon.ico`), Prefix names
// exactly that file.
type StaticMap struct {
	Prefix string // begins with "/", no trailing "/" (except the root "/" itself)
	Path   string // absolute
}

// ParseStaticMap reads one --static "/PREFIX=DIR". DIR must exist; it is made absolute.
func ParseStaticMap(spec string) (StaticMap, error) {
	prefix, dir, ok := strings.Cut(spec, "=")
	prefix, dir = strings.TrimSpace(prefix), strings.TrimSpace(dir)
	if !ok || prefix == "" || dir == "" {
		return StaticMap{}, fmt.Errorf("%q is not /PREFIX=DIR", spec)
	}
	if !strings.HasPrefix(prefix, "/") {
		return StaticMap{}, fmt.Errorf("%q: the prefix must begin with /", spec)
	}
	if strings.ContainsRune(prefix, 0) || slices.Contains(strings.Split(prefix, "/"), "..") {
		return StaticMap{}, fmt.Errorf("%q: the prefix must not contain .. or NUL", spec)
	}
	if prefix = path.Clean(prefix); prefix != "/" {
		prefix = strings.TrimSuffix(prefix, "/")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return StaticMap{}, fmt.Errorf("%q: %w", spec, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return StaticMap{}, fmt.Errorf("%q: %w", spec, err)
	}
	if !st.IsDir() && !st.Mode().IsRegular() {
		return StaticMap{}, fmt.Errorf("%q: %s is neither a directory nor a regular file", spec, dir)
	}
	return StaticMap{Prefix: prefix, Path: abs}, nil
}

// StaticMaps are the --static mounts, checked (Validate has resolved them already).
func (c *Config) StaticMaps() ([]StaticMap, error) {
	out := make([]StaticMap, 0, len(c.Static))
	for _, spec := range c.Static {
		d, err := ParseStaticMap(spec)
		if err != nil {
			return nil, fmt.Errorf("static: %w", err)
		}
		out = append(out, d)
	}
	return out, nil
}

// resolveStatic checks one --static /PREFIX=DIR and makes DIR absolute: a relative DIR is
// under --chdir, as in uWSGI, whose static-map paths are relative to the directory it
// changed to.
func (c *Config) resolveStatic(spec string) (string, error) {
	if prefix, dir, ok := strings.Cut(spec, "="); ok && c.Chdir != "" && !filepath.IsAbs(strings.TrimSpace(dir)) {
		spec = prefix + "=" + filepath.Join(c.Chdir, strings.TrimSpace(dir))
	}
	d, err := ParseStaticMap(spec)
	if err != nil {
		return "", err
	}
	return d.Prefix + "=" + d.Path, nil
}

// applyMount checks --mount and takes the app from it. One app per herd: the mount gives
// that app a prefix (uWSGI's --mount with --manage-script-name); several apps in one
// master would share workers, reloads and crashes, so a second app is a second herd.
func (c *Config) applyMount() error {
	if c.Mount == "" {
		return nil
	}
	prefix, app, hasApp := strings.Cut(c.Mount, "=")
	prefix = strings.TrimSpace(prefix)
	app = strings.TrimSpace(app)
	if !strings.HasPrefix(prefix, "/") || strings.ContainsAny(prefix, "?#% \t") {
		return fmt.Errorf("%q: the prefix must be a path such as /app (give /PREFIX=module:callable)", c.Mount)
	}
	if !hasApp {
		return nil
	}
	if c.App != "" && c.App != app {
		return fmt.Errorf("%q names the app %q, but the app is %q: herd serves one app (run one herd per app)", c.Mount, app, c.App)
	}
	c.App = app
	return nil
}

func validAppSpec(s string) bool {
	module, callable, _ := strings.Cut(s, ":")
	if module == "" || strings.Contains(callable, ":") {
		return false
	}
	for _, part := range strings.Split(module, ".") {
		if !isIdentifier(part) {
			return false
		}
	}
	return callable == "" || isIdentifier(callable)
}

func isIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r > 127 || i > 0 && r >= '0' && r <= '9' {
			continue
		}
		return false
	}
	return true
}
