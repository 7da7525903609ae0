package config

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// gunicorn config files (`herd serve -c gunicorn.conf.py`, or ./gunicorn.conf.py found as
// gunicorn finds it) are Python: herd has the configured interpreter execute the file, as
// gunicorn does, and print its module-level names as JSON (gunicorn_conf.py). The settings
// herd has become herd's options; gunicorn settings herd lacks, and server hooks (Python
// functions gunicorn's master would call), are named in one warning. Any other name is the
// file's own (an import, a helper variable) and is ignored as gunicorn ignores it, unless it
// is a near miss of a setting's name (worker = 4): that is a typo, an error naming the
// setting, where gunicorn would silently run without it.

//go:embed gunicorn_conf.py
var gunicornConfScript string

// gunicornSettings is every setting name a gunicorn config file may set.
var gunicornSettings = sync.OnceValue(func() []string {
	names := slices.Clone(gunicornHooks)
	for _, g := range gunicornOptions {
		names = append(names, g.setting)
	}
	return names
})

// gunicornHooks are the settings that are Python functions gunicorn's processes call.
var gunicornHooks = []string{
	"on_starting", "on_reload", "when_ready", "pre_fork", "post_fork", "post_worker_init",
	"worker_int", "worker_abort", "pre_exec", "pre_request", "post_request", "child_exit",
	"worker_exit", "nworkers_changed", "on_exit", "ssl_context",
}

// gunicornSetting maps one config-file setting to a herd option.
type gunicornSetting struct {
	name, key string
	// convert turns the file's value into the raw value for key (nil: as it is); ok false
	// leaves the option alone, as gunicorn's None does.
	convert func(v any) (raw any, ok bool, err error)
}

var gunicornConfMappings = []gunicornSetting{
	{name: "wsgi_app", key: "app"},
	{name: "bind", key: "http"},
	{name: "workers", key: "workers"},
	{name: "threads", key: "threads"},
	{name: "timeout", key: "timeout"},
	{name: "graceful_timeout", key: "graceful-timeout"},
	{name: "keepalive", key: "keep-alive"},
	{name: "max_requests", key: "max-requests"},
	{name: "max_requests_jitter", key: "max-requests-jitter"},
	{name: "limit_request_line", key: "limit-request-line"},
	{name: "limit_request_fields", key: "limit-request-fields"},
	{name: "limit_request_field_size", key: "limit-request-field-size"},
	{name: "reload", key: "reload"},
	{name: "reload_engine", key: "reload-engine"},
	{name: "reload_extra_files", key: "reload-extra"},
	{name: "accesslog", key: "access-log", convert: gunicornAccessLog},
	{name: "errorlog", key: "log-file"},
	{name: "loglevel", key: "log-level", convert: gunicornLogLevel},
	{name: "pidfile", key: "pidfile"},
	{name: "chdir", key: "chdir"},
	{name: "pythonpath", key: "pythonpath"},
	{name: "raw_env", key: "env"},
	{name: "forwarded_allow_ips", key: "forwarded-allow-ips"},
	{name: "proxy_protocol", key: "proxy-protocol", convert: gunicornProxyProtocol},
	{name: "user", key: "uid"},
	{name: "group", key: "gid"},
	{name: "umask", key: "umask", convert: gunicornUmask},
	// TLS as with the flags: herd serves it on --https addresses, so a file with certfile
	// gets Validate's error saying so, unless --https is given.
	{name: "certfile", key: "cert"},
	{name: "keyfile", key: "key"},
	{name: "worker_class", key: "worker-class"},
	{name: "access_log_format", key: "access-log-format"},
	{name: "control_socket", key: "control-socket"},
	{name: "preload_app", key: "preload"},
}

// gunicornForkHooks are the hooks a fork server runs under --preload (hooks.py).
var gunicornForkHooks = []string{"pre_fork", "post_fork", "post_worker_init"}

// gunicornAccessLog: gunicorn's default None means no access log; "-" is stdout there and
// herd's main log here.
func gunicornAccessLog(v any) (any, bool, error) {
	if v == nil {
		return "off", true, nil
	}
	return v, true, nil
}

// gunicornLogLevel maps gunicorn's level names to herd's.
func gunicornLogLevel(v any) (any, bool, error) {
	switch s := strings.ToLower(fmt.Sprint(v)); s {
	case "warning":
		return "warn", true, nil
	case "critical":
		return "error", true, nil
	default:
		return s, true, nil
	}
}

func gunicornProxyProtocol(v any) (any, bool, error) {
	on, err := parseBool(v)
	if err != nil || !on {
		return nil, false, err
	}
	return "*", true, nil // gunicorn's proxy_protocol covers every listener
}

// gunicornUmask: gunicorn takes an int (0o022, i.e. 18) or a string Python's int(s, 0) reads.
func gunicornUmask(v any) (any, bool, error) {
	switch n := v.(type) {
	case nil:
		return nil, false, nil
	case float64:
		if n != math.Trunc(n) || n < 0 || n > 0o777 {
			return nil, false, fmt.Errorf("%v is not a mode such as 0o022", n)
		}
		return fmt.Sprintf("%03o", int(n)), true, nil
	}
	m, err := strconv.ParseInt(fmt.Sprint(v), 0, 32)
	if err != nil || m < 0 || m > 0o777 {
		return nil, false, fmt.Errorf("%q is not a mode such as 0o022", v)
	}
	return fmt.Sprintf("%03o", m), true, nil
}

// isGunicornFile says whether a --config names a gunicorn (Python) config file.
func isGunicornFile(spec string) bool {
	return strings.HasPrefix(spec, "python:") || strings.HasPrefix(spec, "file:") || strings.EqualFold(filepath.Ext(spec), ".py")
}

// gunicornName is how a gunicorn config location is shown: its file's base name.
func gunicornName(spec string) string {
	if m, ok := strings.CutPrefix(spec, "python:"); ok {
		return m
	}
	return filepath.Base(strings.TrimPrefix(spec, "file:"))
}

// gunicornValue is one name of the evaluated file.
type gunicornValue struct {
	Value    any    `json:"value"`
	Callable bool   `json:"callable"`
	Repr     string `json:"repr"`
}

// ReadGunicorn evaluates a gunicorn config file with python and returns herd's option values
// from it, and what herd does not take: at most one warning, and the settings whose work
// herd would not do.
func ReadGunicorn(spec, python string) (map[string]fileValue, fileNotes, error) {
	base := gunicornName(spec)
	names, err := evalGunicorn(spec, python)
	if err != nil {
		return nil, fileNotes{}, err
	}
	byName := map[string]gunicornSetting{}
	for _, m := range gunicornConfMappings {
		byName[m.name] = m
	}
	out := map[string]fileValue{}
	var errs, hooks []string
	var verdict gunicornVerdict
	for _, name := range sortedKeys(names) {
		v := names[name]
		m, mapped := byName[name]
		g, known := gunicornBySetting(name)
		switch {
		case slices.Contains(gunicornHooks, name):
			if v.Callable {
				hooks = append(hooks, name)
			}
		case mapped && v.Repr != "":
			errs = append(errs, fmt.Sprintf("%s = %s is not a value herd can take", name, v.Repr))
		case mapped:
			raw, ok, err := v.Value, v.Value != nil, error(nil)
			if m.convert != nil {
				raw, ok, err = m.convert(v.Value)
			}
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", name, err))
			} else if ok {
				out[m.key] = fileValue{raw: raw, source: fmt.Sprintf("gunicorn file %s (%s)", base, name)}
			}
		case known:
			shown := gunicornShow(v)
			verdict.judge(g, fmt.Sprintf("%s = %s", name, shown), shown)
		default:
			if near := gunicornTypo(name); near != "" {
				errs = append(errs, fmt.Sprintf("%q is no gunicorn setting (did you mean %q?)", name, near))
			}
		}
	}
	errs = append(errs, verdict.refused...)
	if len(errs) > 0 {
		return nil, fileNotes{}, fmt.Errorf("gunicorn file %s: %s", base, strings.Join(errs, "; "))
	}
	// The warning is written once --preload is known (takeGunicornHooks): it decides
	// which hooks run.
	return out, fileNotes{ignored: verdict.ignored, from: "gunicorn file " + base, hooks: hooks, unsupported: verdict.unsupported}, nil
}

// takeGunicornHooks decides what becomes of a gunicorn file's server hooks: under
// --preload the fork server runs the fork hooks from the file; the others, and all of them
// without --preload, are named in the warning. It returns the warning's item, or "".
func (l *Loaded) takeGunicornHooks(hooks []string, location string) string {
	var named []string
	for _, h := range hooks {
		if l.Config.Preload && slices.Contains(gunicornForkHooks, h) {
			l.Config.GunicornHooks = absConfigLocation(location)
			continue
		}
		named = append(named, h)
	}
	if len(named) == 0 {
		return ""
	}
	why := "herd's master runs no Python"
	if !l.Config.Preload && slices.ContainsFunc(named, func(h string) bool { return slices.Contains(gunicornForkHooks, h) }) {
		why += "; with preload_app = True (--preload) herd's fork server runs " + strings.Join(gunicornForkHooks, ", ")
	}
	return "server hooks " + strings.Join(named, ", ") + " (" + why + ")"
}

// absConfigLocation is a config file's location as another process in another directory
// finds it: python:MODULE as it is, a path made absolute.
func absConfigLocation(location string) string {
	if strings.HasPrefix(location, "python:") {
		return location
	}
	path := strings.TrimPrefix(location, "file:")
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}

// gunicornTypo returns the setting a name of the file nearly spells: a lowercase name of five
// letters or more within two edits of a setting. Upper-case names (constants), short names
// and names further off are the file's own, and gunicorn ignores them.
func gunicornTypo(name string) string {
	if len(name) < 5 || name != strings.ToLower(name) {
		return ""
	}
	near := Nearest(name, gunicornSettings())
	if near == "" || editDistance(name, near) > 2 {
		return ""
	}
	return near
}

func gunicornShow(v gunicornValue) string {
	if v.Repr != "" {
		return v.Repr
	}
	if s, ok := v.Value.(string); ok {
		return s
	}
	b, _ := json.Marshal(v.Value)
	return string(b)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// evalGunicorn runs gunicorn_conf.py on the file with python, in the working directory.
func evalGunicorn(spec, python string) (map[string]gunicornValue, error) {
	base := gunicornName(spec)
	script, err := os.CreateTemp("", "herd-gunicorn-conf-*.py")
	if err != nil {
		return nil, fmt.Errorf("gunicorn file %s: %w", base, err)
	}
	defer os.Remove(script.Name())
	_, werr := script.WriteString(gunicornConfScript)
	if err := errors.Join(werr, script.Close()); err != nil {
		return nil, fmt.Errorf("gunicorn file %s: %w", base, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, script.Name(), spec)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("gunicorn file %s: %s could not evaluate it (%w):\n%s", base, python, err, lastLines(stderr.String(), 12))
	}
	var names map[string]gunicornValue
	if err := json.Unmarshal(stdout.Bytes(), &names); err != nil {
		return nil, fmt.Errorf("gunicorn file %s: reading what %s printed: %w", base, python, err)
	}
	return names, nil
}

// lastLines keeps the end of a traceback, where the error is.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{"..."}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
