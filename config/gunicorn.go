package config

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/pflag"
)

// gunicorn's command line: `-w 4 -b unix:/run/app.sock --timeout 30 app:app` means under herd
// what it means under gunicorn. Most of gunicorn's flags are herd options already, under the
// same name (--workers, --threads, --chdir) or an alias tag (--bind, --access-logfile). The
// few below set options that other parts of herd add; until an option lands, its gunicorn flag
// is accepted and named in a warning, never silently ignored; once it lands, the flag becomes
// that option's alias by itself.

// gunicornPending maps a gunicorn flag to the herd option it will set.
var gunicornPending = []struct {
	flag, key string
	bare      bool // a switch without a value, like --reload
}{
	{flag: "timeout", key: "timeout"},
	{flag: "max-requests", key: "max-requests"},
	{flag: "max-requests-jitter", key: "max-requests-jitter"},
	{flag: "reload", key: "reload", bare: true},
	{flag: "pid", key: "pidfile"},
}

// gunicornFlags are the gunicorn flags herd takes with gunicorn's meaning, for the
// migration table; each is a herd option key, an alias, or pending above (a test checks).
var gunicornFlags = []string{
	"workers", "bind", "threads", "timeout", "graceful-timeout", "keep-alive", "max-requests",
	"max-requests-jitter", "reload", "access-logfile", "error-logfile", "pid", "chdir", "env",
	"forwarded-allow-ips", "pythonpath", "limit-request-line", "limit-request-fields",
	"limit-request-field-size", "certfile", "keyfile", "worker-connections",
}

// gunicornNotes say where herd's meaning of a gunicorn flag differs in detail.
var gunicornNotes = map[string]string{
	"workers":            "0 (herd's default) means one per CPU core; gunicorn's default is 1",
	"bind":               "HOST:PORT or unix:PATH, repeatable; fd:// is not taken (herd takes systemd socket activation instead)",
	"threads":            "herd's workers serve N requests at once from a thread pool, like gunicorn's gthread",
	"keep-alive":         "herd's default is 75s, gunicorn's 2s; 0 turns keep-alive off",
	"access-logfile":     "`-` means herd's main log (stderr), not stdout; `off` turns it off",
	"error-logfile":      "`-` means stderr, as in gunicorn",
	"env":                "a value may contain commas: repeat -e for several variables",
	"certfile":           "TLS is served on --https addresses only: `-b ADDR --certfile F` is `--https ADDR --cert F`; without --https it is an error, not plain HTTP",
	"keyfile":            "with --cert and --https, as above",
	"worker-connections": "one bound for the whole master (herd's workers never hold client connections), not per worker; herd's default is 10000, gunicorn's 1000",
}

// pendingAliases gives an option the gunicorn flags that name it in gunicornPending.
func pendingAliases(key string) []string {
	var out []string
	for _, p := range gunicornPending {
		if p.key == key && p.flag != key {
			out = append(out, p.flag)
		}
	}
	return out
}

// registerPending adds a hidden flag for each gunicorn flag whose option has not landed.
func registerPending(fs *pflag.FlagSet) {
	for _, p := range gunicornPending {
		if _, ok := Lookup(p.key); ok || fs.Lookup(p.flag) != nil {
			continue
		}
		f := fs.VarPF(&textValue{typName: "string"}, p.flag, "", "gunicorn's --"+p.flag+": not supported by herd yet")
		f.Hidden = true
		if p.bare {
			f.NoOptDefVal = "true"
		}
	}
}

// pendingWarning names the gunicorn flags given that herd does not take yet.
func pendingWarning(fs *pflag.FlagSet) []string {
	if fs == nil {
		return nil
	}
	var used []string
	for _, p := range gunicornPending {
		if _, ok := Lookup(p.key); ok {
			continue
		}
		if f := fs.Lookup(p.flag); f != nil && f.Changed {
			used = append(used, "--"+p.flag)
		}
	}
	if len(used) == 0 {
		return nil
	}
	slices.Sort(used)
	return []string{fmt.Sprintf("gunicorn flags herd does not support yet, ignored: %s", strings.Join(used, ", "))}
}
