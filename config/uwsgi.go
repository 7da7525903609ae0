package config

import (
	_ "embed"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// uWSGI .ini files: `herd serve --ini app.ini` (or --config app.ini, or app.ini:section) reads
// the [uwsgi] section and maps every option herd has to herd's own. An option uWSGI has and
// herd lacks is named in one warning; a name uWSGI does not know either is a typo: an error
// with the nearest known name. A key no option has is allowed only as a placeholder, that is
// when a %(name) elsewhere in the file uses it, as uWSGI allows.

//go:embed uwsgi-options.txt
var uwsgiOptionList string

// uwsgiKnown is every option name uWSGI 2.0 takes.
var uwsgiKnown = sync.OnceValue(func() []string { return nameList(uwsgiOptionList) })

// nameList reads an embedded list of names, one a line, # starting a comment line.
func nameList(text string) []string {
	var names []string
	for _, line := range strings.Split(text, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			names = append(names, line)
		}
	}
	return names
}

// uwsgiMapping says what one uWSGI option (under any of its names) means for herd.
type uwsgiMapping struct {
	names []string
	// key is the herd option it sets. When no option has that key yet, the uWSGI option
	// is listed as "not supported yet".
	key string
	// convert turns the uWSGI values (every line of the option, in file order) into the
	// raw value for key; nil: the last value as is, or every value for a list option.
	convert func(values []string, o Option) (any, error)
	// agrees is for options that describe what herd always does: it returns "" when the
	// value matches herd's behaviour, else what herd does instead (the value is then
	// listed in the warning).
	agrees func(value string) string
	// note explains the mapping in the migration table.
	note string
}

// uwsgiMappings is the translation table: uWSGI's names on the left, herd's option keys on
// the right. It is not a second option list: every key must be a Config option (or one
// announced by another issue, reported as not supported until it lands).
var uwsgiMappings = []uwsgiMapping{
	{names: []string{"module", "wsgi"}, key: "app", note: "module or module:callable; `callable` sets the callable"},
	{names: []string{"wsgi-file", "file"}, key: "app", note: "the file's directory goes on the Python path and the file is imported as a module"},
	{names: []string{"callable"}, key: "app", note: "the part after the colon of the app"},
	{names: []string{"chdir"}, key: "chdir"},
	{names: []string{"home", "virtualenv", "venv", "pyhome"}, key: "venv"},
	{names: []string{"pythonpath", "python-path", "pp"}, key: "pythonpath"},
	{names: []string{"processes", "workers"}, key: "workers"},
	{names: []string{"threads"}, key: "threads"},
	{names: []string{"http", "http-socket"}, key: "http", convert: uwsgiAddresses,
		note: "herd's master speaks HTTP and balances over its workers in both cases; a path is a Unix socket"},
	{names: []string{"socket", "uwsgi-socket"}, key: "uwsgi-socket", convert: uwsgiAddresses, note: "uwsgi protocol for nginx's uwsgi_pass; a path is a Unix socket"},
	{names: []string{"mount"}, key: "mount", convert: uwsgiMount, note: "one mount per herd: /PREFIX=module:callable"},
	{names: []string{"manage-script-name"}, agrees: wantTrue("herd strips the --mount prefix from PATH_INFO always"), note: "with --mount, herd always moves the prefix from PATH_INFO to SCRIPT_NAME"},
	{names: []string{"chmod-socket", "chmod"}, key: "uwsgi-socket-mode", convert: uwsgiChmod, note: "octal; without a value 666, as in uWSGI"},
	{names: []string{"harakiri"}, key: "timeout", convert: uwsgiSeconds},
	{names: []string{"max-requests"}, key: "max-requests"},
	{names: []string{"max-worker-lifetime"}, key: "max-lifetime", convert: uwsgiSeconds},
	{names: []string{"worker-reload-mercy", "reload-mercy"}, key: "graceful-timeout", convert: uwsgiSeconds,
		note: "how long a stopping worker may finish its requests before it is killed"},
	{names: []string{"http-headers-timeout"}, key: "header-timeout", convert: uwsgiSeconds, note: "seconds, as in uWSGI; herd's default is 30"},
	{names: []string{"limit-post"}, key: "max-body-size", note: "larger bodies get 413"},
	{names: []string{"stats"}, key: "admin", note: "herd serves its stats as JSON over HTTP at /stats of --admin (uWSGI's stats-http)"},
	{names: []string{"stats-http"}, agrees: func(string) string { return "" }, note: "herd's stats are always served over HTTP"},
	{names: []string{"reload-on-rss"}, key: "reload-on-rss", convert: uwsgiMegabytes, note: "megabytes, as in uWSGI"},
	{names: []string{"touch-reload"}, key: "touch-reload"},
	{names: []string{"py-autoreload"}, key: "reload", convert: uwsgiAutoreload, note: "any interval above 0 turns on herd's file watcher"},
	{names: []string{"static-map"}, key: "static", note: "/PREFIX=DIR, repeatable; the master serves the files, and a path that is not a file there goes to the app, as in uWSGI"},
	{names: []string{"static-map2"}, key: "static", convert: uwsgiStaticMap2, note: "/PREFIX=DIR serves DIR/PREFIX/...: herd takes it as --static /PREFIX=DIR/PREFIX"},
	{names: []string{"env"}, key: "env"},
	{names: []string{"pidfile"}, key: "pidfile"},
	{names: []string{"uid"}, key: "uid"},
	{names: []string{"gid"}, key: "gid"},
	{names: []string{"post-buffering"}, key: "body-buffer", note: "bodies up to this size stay in memory, larger ones go to a temporary file"},
	{names: []string{"disable-logging"}, key: "access-log", convert: uwsgiDisableLogging, note: "true turns the access log off"},
	{names: []string{"logto"}, key: "log-file", note: "the request lines go there too, as in uWSGI (unless disable-logging)"},
	{names: []string{"buffer-size"}, agrees: uwsgiBufferSize, note: "herd takes request heads up to 68 KiB (a uwsgi packet's 64 KiB of vars)"},
	{names: []string{"master"}, agrees: wantTrue("herd always runs a master"), note: "herd always runs a master"},
	{names: []string{"vacuum"}, agrees: wantTrue("herd always removes its sockets and files"), note: "herd always cleans up"},
	{names: []string{"die-on-term"}, agrees: wantTrue("on TERM herd stops gracefully; HUP reloads"), note: "TERM stops herd gracefully (uWSGI 2.0 reloads on TERM without this)"},
	{names: []string{"enable-threads"}, agrees: wantTrue("herd never disables Python threads"), note: "Python threads are always on"},
	{names: []string{"lazy-apps", "lazy"}, key: "preload", convert: uwsgiLazyApps,
		note: "true: each worker imports the app (herd's default); without it herd preloads as uWSGI does: a fork server imports the app once and forks the workers"},
	{names: []string{"need-app"}, agrees: wantTrue("herd exits when no worker can import the app"), note: "herd exits (status 3) when the app cannot be imported"},
	{names: []string{"strict"}, agrees: wantTrue("herd refuses unknown options always"), note: "herd refuses unknown options always"},
	{names: []string{"single-interpreter"}, agrees: wantTrue("herd runs one interpreter per worker"), note: "one interpreter per worker"},
	{names: []string{"http-keepalive"}, agrees: func(string) string { return "" }, note: "herd's HTTP front end keeps connections alive (--keep-alive)"},
	{names: []string{"thunder-lock"}, agrees: func(string) string { return "" }, note: "the master alone accepts connections"},
	{names: []string{"no-orphans"}, agrees: func(string) string { return "" }, note: "workers always exit with their master"},
	{names: []string{"plugin", "plugins"}, agrees: uwsgiPlugins, note: "python3 and http are built in"},
	{names: []string{"log-format", "logformat"}, key: "access-log-format", convert: uwsgiLogFormat,
		note: "uWSGI's variables (%(addr) %(user) %(ltime) %(method) %(uri) %(proto) %(status) %(size) %(msecs) ...) become herd's {fields}"},
	{names: []string{"add-header"}, key: "add-header", note: "added to every response unless the app's has that header"},
	{names: []string{"attach-daemon"}, key: "attach-daemon", note: "herd starts the command with the master, restarts it with backoff, stops it with the master; herd status shows it"},
	{names: []string{"smart-attach-daemon"}, key: "smart-attach-daemon", convert: uwsgiSmartDaemon, note: "PIDFILE COMMAND: herd follows the process the pidfile names"},
}

// uwsgiUnsupported are uWSGI options that ask for work herd does not do: starting without it
// would silently drop a background job, a route or a hook, so they stop the start unless
// --ignore-unsupported. Each prefix covers its family (route covers route-if, route-host ...).
var uwsgiUnsupported = []struct{ prefix, instead string }{
	{"cron", "use a systemd timer or cron(8)"},
	{"unique-cron", "use a systemd timer or cron(8)"},
	{"legion", "herd has no legions"},
	{"spooler", "run a task queue (Celery, RQ) as an attach-daemon"},
	{"mule", "run the code as an attach-daemon"},
	{"mules", "run the code as an attach-daemon"},
	{"farm", "run the code as an attach-daemon"},
	{"route", "put the rule in nginx or the app"},
	{"final-route", "put the rule in nginx or the app"},
	{"error-route", "put the rule in nginx or the app"},
	{"response-route", "put the rule in nginx or the app"},
	{"timer", "use a systemd timer"},
	{"rbtimer", "use a systemd timer"},
	{"signal-timer", "use a systemd timer"},
	{"signal-rbtimer", "use a systemd timer"},
	{"exec-", "run it from the deploy script or systemd's ExecStartPre="},
	{"call-", "run it from the deploy script or the app's start"},
	{"hook-", "run it from the deploy script or systemd's ExecStartPre="},
	{"attach-daemon2", "give it as attach-daemon"},
	{"attach-control-daemon", "give it as attach-daemon"},
	{"smart-attach-daemon2", "give it as smart-attach-daemon"},
	{"emperor", "run one herd per app under systemd"},
}

// uwsgiUnsupportedHint says what to do instead of an option uwsgiUnsupported lists, or "".
func uwsgiUnsupportedHint(name string) string {
	for _, u := range uwsgiUnsupported {
		if name == u.prefix || strings.HasSuffix(u.prefix, "-") && strings.HasPrefix(name, u.prefix) ||
			strings.HasPrefix(name, u.prefix+"-") && name != "route-list" && name != "router-list" {
			return u.instead
		}
	}
	return ""
}

// uwsgiSmartDaemon checks each smart-attach-daemon: a pidfile, then the command.
func uwsgiSmartDaemon(values []string, _ Option) (any, error) {
	for _, v := range values {
		if _, cmd, ok := strings.Cut(strings.TrimSpace(v), " "); !ok || strings.TrimSpace(cmd) == "" {
			return nil, fmt.Errorf("%q is not PIDFILE COMMAND", v)
		}
	}
	return values, nil
}

// uwsgiLazyApps: lazy-apps = true is herd's default, each worker importing the app; false
// (uWSGI's default) preloads.
func uwsgiLazyApps(values []string, _ Option) (any, error) {
	v := strings.TrimSpace(values[len(values)-1])
	lazy, err := parseBool(v)
	if v == "" {
		lazy, err = true, nil // a bare lazy-apps line turns it on
	}
	if err != nil {
		return nil, err
	}
	return !lazy, nil
}

func wantTrue(otherwise string) func(string) string {
	return func(v string) string {
		if b, err := parseBool(v); err == nil && b || strings.TrimSpace(v) == "" {
			return ""
		}
		return otherwise
	}
}

func uwsgiBufferSize(v string) string {
	n, err := ParseSize(v)
	if err != nil || n > 68<<10 {
		return "herd takes request heads up to 68 KiB"
	}
	return ""
}

func uwsgiPlugins(v string) string {
	for _, p := range parseList(v, ",") {
		if !strings.HasPrefix(p, "python") && p != "http" {
			return "herd has no plugin " + p
		}
	}
	return ""
}

// uwsgiAddresses turns uWSGI's socket addresses (HOST:PORT, :PORT, or a path for a Unix
// socket) into herd's (HOST:PORT, :PORT, unix:PATH).
func uwsgiAddresses(values []string, _ Option) (any, error) {
	var out []string
	for _, v := range values {
		for _, a := range parseList(v, ",") {
			if strings.Contains(a, "/") && !strings.HasPrefix(a, "unix:") {
				a = "unix:" + a
			}
			out = append(out, a)
		}
	}
	return out, nil
}

// uwsgiChmod: uWSGI's chmod-socket without a value means 666.
func uwsgiChmod(values []string, _ Option) (any, error) {
	if v := strings.TrimSpace(values[len(values)-1]); v != "" && v != "true" {
		return v, nil
	}
	return "0666", nil
}

// uwsgiMount takes uWSGI's one mount; herd serves one app per master.
func uwsgiMount(values []string, _ Option) (any, error) {
	if len(values) > 1 {
		return nil, fmt.Errorf("%d mounts: herd serves one app per master (run one herd per app)", len(values))
	}
	v := strings.TrimSpace(values[0])
	if _, app, _ := strings.Cut(v, "="); strings.HasSuffix(app, ".py") || strings.Contains(app, "/") {
		return nil, fmt.Errorf("%q: herd mounts a module (/PREFIX=module:callable), not a file", v)
	}
	return v, nil
}

// uwsgiStaticMap2: uWSGI's static-map2 appends the whole request path, prefix included, to
// DIR; herd's --static strips the prefix, so the prefix moves onto DIR.
func uwsgiStaticMap2(values []string, _ Option) (any, error) {
	out := make([]string, len(values))
	for i, v := range values {
		prefix, dir, ok := strings.Cut(strings.TrimSpace(v), "=")
		if !ok || !strings.HasPrefix(strings.TrimSpace(prefix), "/") {
			return nil, fmt.Errorf("%q is not /PREFIX=DIR", v)
		}
		prefix = strings.TrimSpace(prefix)
		out[i] = prefix + "=" + filepath.Join(strings.TrimSpace(dir), prefix)
	}
	return out, nil
}

func uwsgiSeconds(values []string, _ Option) (any, error) {
	v := strings.TrimSpace(values[len(values)-1])
	if _, err := strconv.Atoi(v); err != nil {
		return nil, fmt.Errorf("%q is not a whole number of seconds", v)
	}
	return v + "s", nil
}

func uwsgiMegabytes(values []string, o Option) (any, error) {
	v := strings.TrimSpace(values[len(values)-1])
	if o.kind == sizeType {
		return v + "MiB", nil
	}
	return v, nil
}

func uwsgiAutoreload(values []string, _ Option) (any, error) {
	v := strings.TrimSpace(values[len(values)-1])
	n, err := strconv.Atoi(v)
	if err != nil {
		return nil, fmt.Errorf("%q is not a whole number of seconds", v)
	}
	return n > 0, nil
}

func uwsgiDisableLogging(values []string, _ Option) (any, error) {
	v := values[len(values)-1]
	off, err := parseBool(v)
	if strings.TrimSpace(v) == "" {
		off, err = true, nil // a bare `disable-logging` line turns it on
	}
	if err != nil {
		return nil, err
	}
	if off {
		return "off", nil
	}
	return "-", nil
}

// iniLine is one key = value of the chosen section, after expansion.
type iniLine struct {
	key, value string
	line       int
}

// ReadUWSGI reads a uWSGI .ini file (file, or file:section; the section defaults to uwsgi)
// and returns herd's option values from it, and at most one warning naming every option
// herd does not take.
func ReadUWSGI(spec string) (map[string]fileValue, fileNotes, error) {
	path, section := splitINISection(spec)
	lines, placeholders, err := parseINI(path, section)
	if err != nil {
		return nil, fileNotes{}, err
	}
	base := filepath.Base(path)
	byName := map[string]*uwsgiMapping{}
	for i := range uwsgiMappings {
		for _, n := range uwsgiMappings[i].names {
			byName[n] = &uwsgiMappings[i]
		}
	}

	values := map[string][]iniLine{} // uWSGI name -> its lines
	var order []string
	var unknown, lacking, disagree, notYet, unsupported []string
	for _, l := range lines {
		_, mapped := byName[l.key]
		switch {
		case !mapped && uwsgiUnsupportedHint(l.key) != "":
			unsupported = appendOnce(unsupported, fmt.Sprintf("%s (%s)", l.key, uwsgiUnsupportedHint(l.key)))
		case mapped:
			if _, seen := values[l.key]; !seen {
				order = append(order, l.key)
			}
			values[l.key] = append(values[l.key], l)
		case slices.Contains(uwsgiKnown(), l.key):
			lacking = appendOnce(lacking, l.key)
		case placeholders[l.key] || l.key == "set-placeholder" || l.key == "set-ph":
			// a variable for %(name), not an option
		default:
			msg := fmt.Sprintf("line %d: unknown option %q", l.line, l.key)
			if near := Nearest(l.key, uwsgiKnown()); near != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", near)
			}
			unknown = append(unknown, msg)
		}
	}
	if len(unknown) > 0 {
		return nil, fileNotes{}, fmt.Errorf("uWSGI file %s: %s", base, strings.Join(unknown, "; "))
	}

	out := map[string]fileValue{}
	var errs []string
	app := uwsgiApp{}
	for _, name := range order {
		m := byName[name]
		ls := values[name]
		texts := make([]string, len(ls))
		for i, l := range ls {
			texts[i] = l.value
		}
		last := ls[len(ls)-1]
		source := fmt.Sprintf("uWSGI file %s line %d (%s)", base, last.line, name)
		if m.agrees != nil {
			if why := m.agrees(last.value); why != "" {
				disagree = append(disagree, fmt.Sprintf("%s = %s (%s)", name, last.value, why))
			}
			continue
		}
		if m.key == "app" {
			app.set(name, last.value, source)
			continue
		}
		o, landed := Lookup(m.key)
		var raw any = last.value
		if m.convert != nil {
			// Converted even when herd lacks the option yet: a bad value is an error now,
			// not a surprise when the option lands.
			v, err := m.convert(texts, o)
			if err != nil {
				errs = append(errs, fmt.Sprintf("line %d: %s: %v", last.line, name, err))
				continue
			}
			raw = v
		} else if landed && o.kind.Kind() == reflect.Slice {
			raw = texts
		}
		if !landed {
			notYet = appendOnce(notYet, name)
			continue
		}
		if list, ok := raw.([]string); ok {
			if prev, ok := out[m.key]; ok { // http and http-socket, pythonpath and pp
				raw = append(prev.raw.([]string), list...)
			}
		}
		out[m.key] = fileValue{raw: raw, source: source}
	}
	if len(errs) > 0 {
		return nil, fileNotes{}, fmt.Errorf("uWSGI file %s: %s", base, strings.Join(errs, "; "))
	}
	if err := app.into(out); err != nil {
		return nil, fileNotes{}, fmt.Errorf("uWSGI file %s: %w", base, err)
	}
	if logto, ok := out["log-file"]; ok {
		if _, set := out["access-log"]; !set {
			// uWSGI writes its request lines into the logto file too.
			out["access-log"] = fileValue{raw: logto.raw, source: logto.source}
		}
	}
	if _, set := out["preload"]; !set {
		out["preload"] = fileValue{raw: true, source: fmt.Sprintf("uWSGI file %s (no lazy-apps: uWSGI imports the app once and forks)", base)}
	}
	for i, u := range unsupported {
		unsupported[i] = "uWSGI " + u
	}
	return out, fileNotes{warnings: uwsgiWarning(base, lacking, notYet, disagree), unsupported: unsupported}, nil
}

// uwsgiWarning is the one warning about what herd does not take from the file.
func uwsgiWarning(base string, lacking, notYet, disagree []string) []string {
	var parts []string
	if len(lacking) > 0 {
		slices.Sort(lacking)
		parts = append(parts, "herd has no equivalent of "+strings.Join(lacking, ", "))
	}
	if len(notYet) > 0 {
		slices.Sort(notYet)
		parts = append(parts, "not supported yet: "+strings.Join(notYet, ", "))
	}
	if len(disagree) > 0 {
		parts = append(parts, "herd behaves otherwise for "+strings.Join(disagree, ", "))
	}
	if len(parts) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("uWSGI file %s: options ignored: %s", base, strings.Join(parts, "; "))}
}

func appendOnce(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// uwsgiApp gathers module, wsgi-file and callable into herd's one module:callable.
type uwsgiApp struct {
	module, file, callable string
	source                 string
}

func (a *uwsgiApp) set(name, value, source string) {
	value = strings.TrimSpace(value)
	switch name {
	case "module", "wsgi":
		a.module = value
	case "wsgi-file", "file":
		a.file = value
	case "callable":
		a.callable = value
	}
	if name != "callable" || a.source == "" {
		a.source = source
	}
}

func (a *uwsgiApp) into(out map[string]fileValue) error {
	module := a.module
	if a.file != "" {
		if module != "" {
			return fmt.Errorf("both module and wsgi-file are set: give one")
		}
		// herd imports the app as a module: the file's directory goes first on the path.
		dir := filepath.Dir(a.file)
		module = strings.TrimSuffix(filepath.Base(a.file), filepath.Ext(a.file))
		prev, _ := out["pythonpath"].raw.([]string)
		out["pythonpath"] = fileValue{raw: append([]string{dir}, prev...), source: a.source}
	}
	if module == "" {
		if a.callable != "" {
			return fmt.Errorf("callable = %s is set but neither module nor wsgi-file", a.callable)
		}
		return nil
	}
	if a.callable != "" {
		module, _, _ = strings.Cut(module, ":")
		module += ":" + a.callable
	}
	out["app"] = fileValue{raw: module, source: a.source}
	return nil
}

// splitINISection splits "app.ini:prod" into the file and the section (default "uwsgi"), as
// uwsgi --ini does. A colon is a section separator only when the text before it names a file
// and the whole does not.
func splitINISection(spec string) (string, string) {
	if i := strings.LastIndexByte(spec, ':'); i > 0 {
		if _, err := os.Stat(spec); err != nil {
			if _, err := os.Stat(spec[:i]); err == nil {
				return spec[:i], spec[i+1:]
			}
		}
	}
	return spec, "uwsgi"
}

// parseINI reads the lines of one section, expanding $(ENV), %(name) and uWSGI's magic
// %-variables as uWSGI does: in file order, each value seeing the options set above it.
// It also returns the names used as %(name), so those keys count as placeholders.
func parseINI(path, section string) ([]iniLine, map[string]bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("uWSGI file: %w", err)
	}
	abs, _ := filepath.Abs(path)
	exp := newExpander(abs)
	var lines []iniLine
	var errs []string
	current, found := "", false
	for i, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSpace(strings.TrimSuffix(raw, "\r"))
		if line == "" || line[0] == ';' || line[0] == '#' {
			continue
		}
		if line[0] == '[' && line[len(line)-1] == ']' {
			current = strings.TrimSpace(line[1 : len(line)-1])
			found = found || current == section
			continue
		}
		if current != section {
			continue
		}
		key, value, _ := strings.Cut(line, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		// log-format's %(addr) ... are the request log's variables, not placeholders: uWSGI
		// leaves those it does not know for the logger.
		exp.keepUnknown = key == "log-format" || key == "logformat"
		value, err := exp.expand(value)
		if err != nil {
			errs = append(errs, fmt.Sprintf("line %d: %s: %v", i+1, key, err))
			continue
		}
		if key == "set-placeholder" || key == "set-ph" {
			name, v, _ := strings.Cut(value, "=")
			exp.vars[strings.TrimSpace(name)] = strings.TrimSpace(v)
		}
		exp.vars[key] = value
		lines = append(lines, iniLine{key: key, value: value, line: i + 1})
	}
	if !found {
		return nil, nil, fmt.Errorf("uWSGI file %s: no [%s] section", filepath.Base(path), section)
	}
	if len(errs) > 0 {
		return nil, nil, fmt.Errorf("uWSGI file %s: %s", filepath.Base(path), strings.Join(errs, "; "))
	}
	return lines, exp.used, nil
}

// expander does uWSGI's substitutions in a value.
type expander struct {
	path string            // the absolute path of the file
	vars map[string]string // options and placeholders set so far
	used map[string]bool   // names used as %(name)
	// keepUnknown leaves a %(name) no option or placeholder set as it is.
	keepUnknown bool
}

func newExpander(abs string) *expander {
	return &expander{path: abs, vars: map[string]string{}, used: map[string]bool{}}
}

func (e *expander) expand(v string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '$' && i+1 < len(v) && v[i+1] == '(':
			end := strings.IndexByte(v[i:], ')')
			if end < 0 {
				return "", fmt.Errorf("unclosed $( in %q", v)
			}
			b.WriteString(os.Getenv(v[i+2 : i+end]))
			i += end
		case c == '%' && i+1 < len(v) && v[i+1] == '(':
			end := strings.IndexByte(v[i:], ')')
			if end < 0 {
				return "", fmt.Errorf("unclosed %%( in %q", v)
			}
			name := v[i+2 : i+end]
			val, ok := e.vars[name]
			if !ok && e.keepUnknown {
				b.WriteString(v[i : i+end+1])
				i += end
				continue
			}
			if !ok {
				return "", fmt.Errorf("%%(%s) is not set above this line", name)
			}
			e.used[name] = true
			b.WriteString(val)
			i += end
		case c == '%' && i+1 < len(v):
			val, ok := e.magic(v[i+1])
			if !ok {
				return "", fmt.Errorf("unknown magic variable %%%c", v[i+1])
			}
			b.WriteString(val)
			i++
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// magic is uWSGI's one-letter %-variables about the config file and the machine.
func (e *expander) magic(letter byte) (string, bool) {
	dir := filepath.Dir(e.path)
	name := filepath.Base(e.path)
	switch letter {
	case 'd':
		return dir + "/", true // the file's directory, with a trailing slash as in uWSGI
	case 'p':
		return e.path, true
	case 's':
		return name, true
	case 'n':
		return strings.TrimSuffix(name, filepath.Ext(name)), true
	case 'x':
		return strings.TrimPrefix(filepath.Ext(name), "."), true
	case 'c':
		return filepath.Base(dir), true
	case 'k':
		return strconv.Itoa(runtime.NumCPU()), true
	case 'h':
		h, _ := os.Hostname()
		return h, true
	case 'u':
		return strconv.Itoa(os.Getuid()), true
	case 'g':
		return strconv.Itoa(os.Getgid()), true
	case 'U':
		if u, err := user.Current(); err == nil {
			return u.Username, true
		}
		return strconv.Itoa(os.Getuid()), true
	case '%':
		return "%", true
	}
	return "", false
}
