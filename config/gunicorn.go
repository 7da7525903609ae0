package config

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/pflag"
)

// gunicorn's command line: `-w 4 -b unix:/run/app.sock -k gthread --timeout 30 app:app` means
// under herd what it means under gunicorn. gunicornOptions is every setting of gunicorn 27
// (gunicorn/config.py), with its flags, and what herd does with it, whether it comes as a
// flag or from a gunicorn.conf.py. No gunicorn flag is an unknown flag: each one either sets
// a herd option (an alias of it, or the option's own name), or is accepted and named in the
// one start-up warning with what herd does instead, or is refused with the reason and what
// to do. A flag whose herd option has not landed yet (preload) is named as not supported
// yet; once the option lands, the flag becomes that option's alias by itself.

// gunicornOption says what herd does with one gunicorn setting.
type gunicornOption struct {
	setting string   // the config-file name
	flags   []string // gunicorn's long flags, without --
	short   string   // gunicorn's one-letter flag ("" none)
	bare    bool     // a switch (store_true): it takes no value
	// key is the herd option the setting sets, when herd does the same thing.
	key string
	// note says where herd's meaning of a mapped setting differs in detail (migration table).
	note string
	// instead says, for a setting herd does not take, what herd does instead: the warning.
	instead string
	// agrees, when set, says whether a value is what herd does anyway (no warning then).
	agrees func(value string) bool
	// refuse says why herd will not start with the setting, and what to do instead.
	refuse string
	// unsupported: herd would silently not do the work the setting asks for (gunicorn's
	// dirty arbiters run tasks): the start stops unless --ignore-unsupported.
	unsupported bool
}

var (
	noSyslog  = "herd writes no syslog: its log goes to stderr (the journal under systemd) or --log-file"
	noStatsd  = "herd has no statsd client: it serves Prometheus metrics at /metrics of --admin"
	strictH1  = "herd's HTTP/1 parser is strict (RFC 9112) and is not relaxed"
	goTLS     = "herd serves TLS 1.2 and newer with Go's default ciphers and no client certificates"
	noASGI    = "herd's asgi worker takes uvloop when the interpreter has it, runs lifespan when the app takes it, and hears of a client leaving within 500 ms; its WebSocket messages are bounded at 16 MiB"
	logConfig = "herd's log is configured by --log-level, --log-format and --log-file"
)

var gunicornOptions = []gunicornOption{
	{setting: "config", flags: []string{"config"}, short: "c", agrees: always},
	{setting: "wsgi_app", key: "app"},
	{setting: "bind", flags: []string{"bind"}, short: "b", key: "http", note: "HOST:PORT or unix:PATH, repeatable; fd:// is not taken (herd takes systemd socket activation instead)"},
	{setting: "backlog", flags: []string{"backlog"}, instead: "herd listens with the kernel's backlog (net.core.somaxconn) and bounds its connections with --max-connections"},
	{setting: "workers", flags: []string{"workers"}, short: "w", key: "workers", note: "0 (herd's default) means one per CPU core; gunicorn's default is 1"},
	{setting: "worker_class", flags: []string{"worker-class"}, short: "k", key: "worker-class", note: "sync, gthread and asgi (uvicorn.workers.UvicornWorker too); others are refused until herd has them"},
	{setting: "threads", flags: []string{"threads"}, key: "threads", note: "herd's workers serve N requests at once from a thread pool, like gunicorn's gthread"},
	{setting: "worker_connections", flags: []string{"worker-connections"}, key: "worker-connections", note: "requests an asgi worker serves at once, as gunicorn's; the master's bound on client connections is --max-connections (default 10000)"},
	{setting: "max_requests", flags: []string{"max-requests"}, key: "max-requests"},
	{setting: "max_requests_jitter", flags: []string{"max-requests-jitter"}, key: "max-requests-jitter"},
	{setting: "timeout", flags: []string{"timeout"}, short: "t", key: "timeout", note: "the request gets 504 and its worker is replaced; gunicorn's default is 30s, herd's no limit"},
	{setting: "graceful_timeout", flags: []string{"graceful-timeout"}, key: "graceful-timeout"},
	{setting: "keepalive", flags: []string{"keep-alive"}, key: "keep-alive", note: "herd's default is 75s, gunicorn's 2s; 0 turns keep-alive off"},
	{setting: "limit_request_line", flags: []string{"limit-request-line"}, key: "limit-request-line"},
	{setting: "limit_request_fields", flags: []string{"limit-request-fields"}, key: "limit-request-fields"},
	{setting: "limit_request_field_size", flags: []string{"limit-request-field_size", "limit-request-field-size"}, key: "limit-request-field-size"},
	{setting: "reload", flags: []string{"reload"}, bare: true, key: "reload"},
	{setting: "reload_engine", flags: []string{"reload-engine"}, key: "reload-engine"},
	{setting: "reload_extra_files", flags: []string{"reload-extra-file"}, key: "reload-extra"},
	{setting: "spew", flags: []string{"spew"}, bare: true, instead: "herd does not trace every line the app runs (run the app under python -m trace to see them)"},
	{setting: "check_config", flags: []string{"check-config"}, bare: true, refuse: "run `herd check` with the same options: it checks the configuration and that the app imports"},
	{setting: "print_config", flags: []string{"print-config"}, bare: true, refuse: "run `herd check` with the same options: it prints every option and where its value came from"},
	{setting: "preload_app", flags: []string{"preload"}, bare: true, key: "preload", note: "a fork server imports the app once and forks the workers; herd calls gc.freeze() before each fork (gunicorn leaves it to the app), and reloads re-import the code (gunicorn keeps serving the old code on HUP)"},
	{setting: "sendfile", flags: []string{"no-sendfile"}, bare: true, instead: "herd's master sends --static files with sendfile and copies the app's answers itself"},
	{setting: "reuse_port", flags: []string{"reuse-port"}, bare: true, instead: "herd's master alone listens; USR2 hands its sockets to a new master without SO_REUSEPORT"},
	{setting: "chdir", flags: []string{"chdir"}, key: "chdir"},
	{setting: "daemon", flags: []string{"daemon"}, short: "D", bare: true, agrees: isFalse,
		refuse: "herd runs in the foreground: run it under systemd (docs/deploy/herd.service), a container or your process manager, which keep its log and restart it"},
	{setting: "raw_env", flags: []string{"env"}, short: "e", key: "env", note: "a value may contain commas: repeat -e for several variables"},
	{setting: "pidfile", flags: []string{"pid"}, short: "p", key: "pidfile"},
	{setting: "worker_tmp_dir", flags: []string{"worker-tmp-dir"}, instead: "herd's workers need no heartbeat file: the master knows each worker's state from its control socket"},
	{setting: "user", flags: []string{"user"}, short: "u", key: "uid"},
	{setting: "group", flags: []string{"group"}, short: "g", key: "gid"},
	{setting: "umask", flags: []string{"umask"}, short: "m", key: "umask"},
	{setting: "initgroups", flags: []string{"initgroups"}, bare: true, instead: "herd gives the workers --gid as their only group"},
	{setting: "tmp_upload_dir", instead: "herd spools large bodies in its private runtime directory"},
	{setting: "secure_scheme_headers", instead: "herd takes the scheme from X-Forwarded-Proto and Forwarded of a --forwarded-allow-ips peer"},
	{setting: "forwarded_allow_ips", flags: []string{"forwarded-allow-ips"}, key: "forwarded-allow-ips"},
	{setting: "accesslog", flags: []string{"access-logfile"}, key: "access-log", note: "`-` means herd's main log (stderr), not stdout; `off` turns it off"},
	{setting: "disable_redirect_access_to_syslog", flags: []string{"disable-redirect-access-to-syslog"}, bare: true, instead: noSyslog},
	{setting: "access_log_format", flags: []string{"access-logformat"}, key: "access-log-format", note: "gunicorn's atoms such as %(h)s %(r)s %(s)s %(D)s are taken as they are"},
	{setting: "errorlog", flags: []string{"error-logfile", "log-file"}, key: "log-file", note: "`-` means stderr, as in gunicorn"},
	{setting: "loglevel", flags: []string{"log-level"}, key: "log-level", note: "warning is warn, critical is error"},
	{setting: "capture_output", flags: []string{"capture-output"}, bare: true, agrees: always, note: "herd always logs what the workers write"},
	{setting: "logger_class", flags: []string{"logger-class"}, instead: logConfig},
	{setting: "logconfig", flags: []string{"log-config"}, instead: logConfig},
	{setting: "logconfig_dict", instead: logConfig},
	{setting: "logconfig_json", flags: []string{"log-config-json"}, instead: logConfig},
	{setting: "syslog_addr", flags: []string{"log-syslog-to"}, instead: noSyslog},
	{setting: "syslog", flags: []string{"log-syslog"}, bare: true, instead: noSyslog},
	{setting: "syslog_prefix", flags: []string{"log-syslog-prefix"}, instead: noSyslog},
	{setting: "syslog_facility", flags: []string{"log-syslog-facility"}, instead: noSyslog},
	{setting: "enable_stdio_inheritance", flags: []string{"enable-stdio-inheritance"}, short: "R", bare: true, agrees: always, note: "the workers' stdout and stderr always reach herd's log"},
	{setting: "statsd_host", flags: []string{"statsd-host"}, instead: noStatsd},
	{setting: "dogstatsd_tags", flags: []string{"dogstatsd-tags"}, instead: noStatsd},
	{setting: "statsd_prefix", flags: []string{"statsd-prefix"}, instead: noStatsd},
	{setting: "enable_backlog_metric", flags: []string{"enable-backlog-metric"}, bare: true, instead: "herd's /metrics (--admin) shows its request queue (herd_queue_*)"},
	{setting: "proc_name", flags: []string{"name"}, short: "n", instead: "herd does not rename its processes: `herd status` and `ps` show the master and its workers"},
	{setting: "default_proc_name", agrees: always},
	{setting: "pythonpath", flags: []string{"pythonpath"}, key: "pythonpath"},
	{setting: "paste", flags: []string{"paste", "paster"}, refuse: "herd loads module:callable, not PasteDeploy files: add a wsgi.py with `application = paste.deploy.loadapp('config:/path/app.ini')` and serve wsgi:application"},
	{setting: "raw_paste_global_conf", flags: []string{"paste-global"}, refuse: "herd loads no PasteDeploy files (see --paste)"},
	{setting: "proxy_protocol", flags: []string{"proxy-protocol"}, key: "proxy-protocol", note: "bare or v1, v2, auto: every listener takes the PROXY header; herd also takes a list of listeners"},
	{setting: "proxy_allow_ips", flags: []string{"proxy-allow-from"}, instead: "herd requires the PROXY header on every connection of a --proxy-protocol listener: firewall those listeners"},
	{setting: "protocol", flags: []string{"protocol"}, agrees: func(v string) bool { return v == "http" || v == "uwsgi" },
		note: "uwsgi makes every --bind a --uwsgi-socket", instead: "herd speaks http and uwsgi only"},
	{setting: "uwsgi_allow_ips", flags: []string{"uwsgi-allow-from"}, instead: "herd's --uwsgi-socket takes requests from whoever can reach it: a 0660 Unix socket by default"},
	{setting: "keyfile", flags: []string{"keyfile"}, key: "key", note: "with --cert and --https, as above"},
	{setting: "certfile", flags: []string{"certfile"}, key: "cert", note: "TLS is served on --https addresses only: `-b ADDR --certfile F` is `--https ADDR --cert F`; without --https it is an error, not plain HTTP"},
	{setting: "ssl_version", flags: []string{"ssl-version"}, instead: goTLS},
	{setting: "cert_reqs", flags: []string{"cert-reqs"}, instead: goTLS},
	{setting: "ca_certs", flags: []string{"ca-certs"}, instead: goTLS},
	{setting: "suppress_ragged_eofs", flags: []string{"suppress-ragged-eofs"}, bare: true, agrees: always},
	{setting: "do_handshake_on_connect", flags: []string{"do-handshake-on-connect"}, bare: true, agrees: always},
	{setting: "ciphers", flags: []string{"ciphers"}, instead: goTLS},
	{setting: "http_protocols", flags: []string{"http-protocols"}, instead: "herd offers HTTP/2 and HTTP/1.1 by ALPN on --https, and cleartext HTTP/2 with --h2c"},
	{setting: "http2_cleartext", flags: []string{"http2-cleartext"}, instead: "give --h2c for cleartext HTTP/2"},
	{setting: "http2_max_concurrent_streams", flags: []string{"http2-max-concurrent-streams"}, instead: "herd keeps Go's HTTP/2 limits"},
	{setting: "http2_initial_window_size", flags: []string{"http2-initial-window-size"}, instead: "herd keeps Go's HTTP/2 limits"},
	{setting: "http2_max_frame_size", flags: []string{"http2-max-frame-size"}, instead: "herd keeps Go's HTTP/2 limits"},
	{setting: "http2_max_header_list_size", flags: []string{"http2-max-header-list-size"}, instead: "herd keeps Go's HTTP/2 limits"},
	{setting: "permit_obsolete_folding", flags: []string{"permit-obsolete-folding"}, bare: true, instead: strictH1},
	{setting: "strip_header_spaces", flags: []string{"strip-header-spaces"}, bare: true, instead: strictH1},
	{setting: "permit_unconventional_http_method", flags: []string{"permit-unconventional-http-method"}, bare: true, instead: strictH1},
	{setting: "permit_unconventional_http_version", flags: []string{"permit-unconventional-http-version"}, bare: true, instead: strictH1},
	{setting: "casefold_http_method", flags: []string{"casefold-http-method"}, bare: true, instead: strictH1},
	{setting: "forwarder_headers", flags: []string{"forwarder-headers"}, instead: "herd passes SCRIPT_NAME only from --mount and never takes PATH_INFO from a header"},
	{setting: "header_map", flags: []string{"header-map"}, agrees: func(v string) bool { return v == "drop" }, instead: "herd drops headers with _ in their name (gunicorn's drop)"},
	{setting: "asgi_loop", flags: []string{"asgi-loop"}, instead: noASGI},
	{setting: "asgi_lifespan", flags: []string{"asgi-lifespan"}, instead: noASGI},
	{setting: "asgi_disconnect_grace_period", flags: []string{"asgi-disconnect-grace-period"}, instead: noASGI},
	{setting: "websocket_max_message_size", flags: []string{"websocket-max-message-size"}, instead: noASGI},
	{setting: "http_parser", flags: []string{"http-parser"}, instead: "herd's master parses HTTP itself"},
	{setting: "root_path", flags: []string{"root-path"}, instead: "give --mount /PREFIX to serve the app under a prefix"},
	{setting: "dirty_apps", flags: []string{"dirty-app"}, unsupported: true, instead: "herd has no dirty arbiters: run the tasks as an --attach-daemon"},
	{setting: "dirty_workers", flags: []string{"dirty-workers"}, unsupported: true, instead: "herd has no dirty arbiters"},
	{setting: "dirty_timeout", flags: []string{"dirty-timeout"}, instead: "herd has no dirty arbiters"},
	{setting: "dirty_threads", flags: []string{"dirty-threads"}, instead: "herd has no dirty arbiters"},
	{setting: "dirty_graceful_timeout", flags: []string{"dirty-graceful-timeout"}, instead: "herd has no dirty arbiters"},
	{setting: "control_socket", flags: []string{"control-socket"}, key: "control-socket"},
	{setting: "control_socket_mode", flags: []string{"control-socket-mode"}, instead: "herd's control socket is its owner's alone (0600)"},
	{setting: "control_socket_disable", flags: []string{"no-control-socket"}, bare: true, instead: "herd's control socket is always on, its owner's alone (0600)"},
}

func always(string) bool { return true }

func isFalse(v string) bool { b, err := parseBool(v); return err == nil && !b }

// gunicornBySetting finds a setting's row.
func gunicornBySetting(name string) (gunicornOption, bool) {
	i := slices.IndexFunc(gunicornOptions, func(g gunicornOption) bool { return g.setting == name })
	if i < 0 {
		return gunicornOption{}, false
	}
	return gunicornOptions[i], true
}

// pendingAliases gives an option the gunicorn flags that set it under another name.
func pendingAliases(key string) []string {
	var out []string
	for _, g := range gunicornOptions {
		if g.key != key {
			continue
		}
		for _, f := range g.flags {
			if f != key {
				out = append(out, f)
			}
		}
	}
	return out
}

// registerGunicornFlags adds a hidden flag for each gunicorn flag that sets no herd option
// (yet): it is accepted, and resolve decides what it means. A one-letter form is added to
// the option's flag when that has none.
func registerGunicornFlags(fs *pflag.FlagSet) {
	for _, g := range gunicornOptions {
		if isOption(g.key) {
			continue
		}
		for i, name := range g.flags {
			if fs.Lookup(name) != nil {
				continue
			}
			short := ""
			if i == 0 && fs.ShorthandLookup(g.short) == nil {
				short = g.short
			}
			f := fs.VarPF(&textValue{typName: "string"}, name, short, "gunicorn's --"+name)
			f.Hidden = true
			if g.bare {
				f.NoOptDefVal = "true"
			}
		}
	}
}

// gunicornVerdict sorts what a foreign config asked for that herd does not do as it is.
type gunicornVerdict struct {
	ignored     []string // named in the warning, with what herd does instead
	refused     []string // errors
	unsupported []string // work herd would not do: an error unless --ignore-unsupported
}

// judge files one gunicorn setting, given as what (--flag or setting = value), under its
// verdict. It returns false when herd takes the setting as it is.
func (v *gunicornVerdict) judge(g gunicornOption, what, value string) bool {
	switch {
	case g.agrees != nil && g.agrees(value), g.bare && isFalse(value):
		return false
	case g.refuse != "":
		v.refused = append(v.refused, fmt.Sprintf("%s: %s", what, g.refuse))
	case g.unsupported:
		v.unsupported = append(v.unsupported, fmt.Sprintf("%s (%s)", what, g.instead))
	case g.key != "" && !isOption(g.key):
		v.ignored = append(v.ignored, fmt.Sprintf("%s (not supported yet: %s)", what, g.note))
	case g.instead != "":
		v.ignored = append(v.ignored, fmt.Sprintf("%s (%s)", what, g.instead))
	default:
		return false
	}
	return true
}

// gunicornFlagVerdict judges the gunicorn flags given on the command line that set no herd
// option, and applies --protocol uwsgi.
func gunicornFlagVerdict(fs *pflag.FlagSet, l *Loaded) gunicornVerdict {
	var v gunicornVerdict
	if fs == nil {
		return v
	}
	for _, g := range gunicornOptions {
		if isOption(g.key) {
			continue
		}
		for _, name := range g.flags {
			f := fs.Lookup(name)
			if f == nil || !f.Changed {
				continue
			}
			what := "--" + name
			if !g.bare {
				what += " " + f.Value.String()
			}
			if g.setting == "protocol" && f.Value.String() == "uwsgi" {
				uwsgiProtocol(l)
			}
			v.judge(g, what, f.Value.String())
		}
	}
	return v
}

// uwsgiProtocol is gunicorn's --protocol uwsgi: the bound addresses speak uwsgi.
func uwsgiProtocol(l *Loaded) {
	if l.Sources["http"] == "default" {
		return
	}
	l.Config.UwsgiSocket = append(l.Config.UwsgiSocket, l.Config.HTTP...)
	l.Config.HTTP = nil
	l.Sources["uwsgi-socket"] = l.Sources["http"] + " with --protocol uwsgi"
}

// warnings and errors of a verdict, given where the settings came from.
func (v gunicornVerdict) warning(from string) []string {
	if len(v.ignored) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("%s: herd does not take %s", from, strings.Join(v.ignored, "; "))}
}
