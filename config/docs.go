package config

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

//go:generate go run ../cmd/herd config --docs ../docs

// DocFiles are the docs generated from the Config, by file name in docs/.
var DocFiles = map[string]func(io.Writer) error{
	"configuration.md": WriteReference,
	"migration.md":     WriteMigration,
}

const generatedNote = "<!-- Generated from config.Config by `go generate ./config` (herd config --docs docs). Do not edit by hand. -->\n\n"

// WriteReference writes the options table of docs/configuration.md.
func WriteReference(w io.Writer) error {
	var b strings.Builder
	b.WriteString(generatedNote)
	b.WriteString(`# herd configuration

Every option of ` + "`herd serve`" + ` (and ` + "`herd check`" + `) can be given four ways; the first that sets it wins:

1. a flag: ` + "`--workers 4`" + `;
2. an environment variable: ` + "`HERD_WORKERS=4`" + ` (HERD_ and the key in capitals, dashes as underscores);
3. a config file: ` + "`--config FILE`" + `, or else the first of ` + "`" + strings.Join(DefaultFiles, "`, `") + "`" + ` found in the
   working directory. YAML, TOML and JSON use the keys below (` + "`workers: 4`" + `); a uWSGI ` + "`.ini`" + ` file
   (` + "`--config app.ini`" + `, ` + "`--ini app.ini`" + ` or ` + "`app.ini:section`" + `) is read as uWSGI reads it: see
   [migration.md](migration.md), and so is a gunicorn config file (` + "`-c gunicorn.conf.py`" + `, Python run by
   ` + "`--python`" + `). A key no option has is an error that names the nearest one;
4. the default.

` + "`herd check`" + ` prints the effective value of every option and where it came from.

Durations take a unit (` + "`500ms`, `30s`, `2m`" + `); a bare number means seconds, as in uWSGI and gunicorn.
Sizes take ` + "`65536`, `64KiB`, `10MB`, `1GiB`" + `. Lists repeat the flag or separate items with commas.

| key | flag | environment | default | accepts | meaning |
|---|---|---|---|---|---|
`)
	for _, o := range Options() {
		flags := "`--" + o.Key + "`"
		if o.Short != "" {
			flags = "`-" + o.Short + "`, " + flags
		}
		for _, a := range o.Aliases {
			flags += ", `--" + a + "`"
		}
		def := o.Default
		if def == "" {
			def = "(none)"
		}
		fmt.Fprintf(&b, "| %s | %s | `%s` | `%s` | %s | %s |\n", o.Key, flags, o.EnvName(), def, cell(o.Accepts()), cell(o.Help))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteMigration writes docs/migration.md: uWSGI option / gunicorn flag / herd option.
func WriteMigration(w io.Writer) error {
	var b strings.Builder
	b.WriteString(generatedNote)
	b.WriteString(`# Moving from uWSGI or gunicorn

A uWSGI ini file runs as it is: ` + "`herd serve --ini app.ini`" + ` (or ` + "`--config app.ini`" + `, or
` + "`app.ini:section`" + ` for another section than ` + "`[uwsgi]`" + `). herd expands ` + "`$(ENV)`" + `, ` + "`%(option)`" + ` (the
value set for an option or placeholder above the line) and uWSGI's magic variables ` + "`%d %p %s %n %x %c %k %h %u %U %g %%`" + `
as uWSGI does. A key that only serves as a ` + "`%(placeholder)`" + ` is fine; any other key uWSGI does not know is an
error naming the nearest option. Options uWSGI has and herd does not take are named together in
one warning at start-up. Flags, HERD_* variables and the file combine as usual: flag > environment > file.

A gunicorn command line runs as it is: ` + "`herd serve -w 4 -b 127.0.0.1:8000 -b unix:/run/app.sock --timeout 30 app:app`" + `.

A gunicorn config file runs as it is too: ` + "`herd serve -c gunicorn.conf.py`" + ` (also ` + "`file:PATH`" + ` and
` + "`python:MODULE`" + `), and without ` + "`-c`" + ` herd reads ` + "`./gunicorn.conf.py`" + ` when no herd.yaml/.yml/.toml/.json is there,
as gunicorn reads it by default. The file is Python: herd has the interpreter of ` + "`--python`" + ` (or
` + "`--venv`" + `, from a flag or HERD_*) execute it as gunicorn does, with the working directory on
` + "`sys.path`" + `, so imports, ` + "`os.environ`" + ` and computed values work. The settings in the table at the end
become herd's options; flags and HERD_* variables beat them, as gunicorn's flags beat its file.
gunicorn settings herd lacks, server hooks (` + "`post_fork`" + ` and the like: herd's master runs no Python)
and a ` + "`worker_class`" + ` other than sync or gthread are named in one warning. Other names are the file's
own (imports, helpers, UPPER_CASE constants) and are ignored, as gunicorn ignores them, except a
lowercase name within two letters of a setting (` + "`worker = 4`" + `): gunicorn would silently run without
it, herd stops with an error naming the setting. ` + "`GUNICORN_CMD_ARGS`" + ` is not read: give HERD_* variables.

Rows marked *not supported yet* name an option of herd that is not built yet: herd accepts
the uWSGI option or gunicorn flag and names it in the start-up warning.

| uWSGI option | gunicorn flag | herd | notes |
|---|---|---|---|
`)
	type row struct{ uwsgi, gunicorn, herd, note string }
	var rows []row
	for _, m := range uwsgiMappings {
		r := row{uwsgi: code("", m.names...), note: joinNotes(m.note, gunicornFor(m.key))}
		switch {
		case m.key == "":
			r.herd = "always"
		case isOption(m.key):
			r.herd = "`--" + m.key + "`"
			r.gunicorn = gunicornCell(gunicornFor(m.key)...)
		default:
			r.herd = "*not supported yet* (`--" + m.key + "`)"
			r.gunicorn = gunicornCell(gunicornFor(m.key)...)
		}
		rows = append(rows, r)
	}
	mapped := func(key string) bool {
		return slices.ContainsFunc(uwsgiMappings, func(m uwsgiMapping) bool { return m.key == key })
	}
	for _, f := range gunicornFlags {
		key := gunicornKey(f)
		if mapped(key) {
			continue
		}
		r := row{gunicorn: gunicornCell(f), herd: "`--" + key + "`", note: gunicornNotes[f]}
		if !isOption(key) {
			r.herd = "*not supported yet* (`--" + key + "`)"
		}
		rows = append(rows, r)
	}
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", r.uwsgi, r.gunicorn, r.herd, cell(r.note))
	}
	b.WriteString("\n## gunicorn config file settings\n\n| setting | herd |\n|---|---|\n")
	for _, m := range gunicornConfMappings {
		fmt.Fprintf(&b, "| `%s` | `--%s` |\n", m.name, m.key)
	}
	fmt.Fprintf(&b, "| `worker_class` | sync and gthread are what herd's workers do; others are named in the warning |\n")
	fmt.Fprintf(&b, "| %s | server hooks: named in the warning, not run |\n", code("", gunicornHooks...))
	_, err := io.WriteString(w, b.String())
	return err
}

func isOption(key string) bool { _, ok := Lookup(key); return ok }

// gunicornKey is the herd option a gunicorn flag sets.
func gunicornKey(flag string) string {
	for _, o := range Options() {
		if o.Key == flag || slices.Contains(o.Aliases, flag) {
			return o.Key
		}
	}
	for _, p := range gunicornPending {
		if p.flag == flag {
			return p.key
		}
	}
	return ""
}

// gunicornFor lists the gunicorn flags that set a herd option.
func gunicornFor(key string) []string {
	var out []string
	for _, f := range gunicornFlags {
		if gunicornKey(f) == key {
			out = append(out, f)
		}
	}
	return out
}

// gunicornCell shows gunicorn flags with the one-letter form herd shares (-w, -b, -e).
func gunicornCell(flags ...string) string {
	var parts []string
	for _, f := range flags {
		if o, ok := Lookup(gunicornKey(f)); ok && o.Short != "" {
			parts = append(parts, code("-", o.Short))
		}
		parts = append(parts, code("--", f))
	}
	return strings.Join(parts, ", ")
}

func code(prefix string, names ...string) string {
	var parts []string
	for _, n := range names {
		parts = append(parts, "`"+prefix+n+"`")
	}
	return strings.Join(parts, ", ")
}

func cell(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

// joinNotes adds the gunicorn notes of the flags in a uWSGI row to the row's own note.
func joinNotes(note string, flags []string) string {
	parts := []string{}
	if note != "" {
		parts = append(parts, note)
	}
	for _, f := range flags {
		if n := gunicornNotes[f]; n != "" {
			parts = append(parts, "--"+f+": "+n)
		}
	}
	return strings.Join(parts, "; ")
}
