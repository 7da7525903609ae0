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

The options come in the sections ` + "`herd serve --help`" + ` shows them in.
`)
	section := ""
	for _, o := range Options() {
		if o.Section != section {
			section = o.Section
			fmt.Fprintf(&b, "\n## %s\n\n| key | flag | environment | default | accepts | meaning |\n|---|---|---|---|---|---|\n", section)
		}
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
		fmt.Fprintf(&b, "| %s | %s | `%s` | `%s` | %s | %s |\n", o.Key, flags, o.EnvName(), def, cell(o.Accepts()), cell(o.Doc))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteMigration writes docs/migration.md: uWSGI options, then gunicorn settings, and what
// herd does with each.
func WriteMigration(w io.Writer) error {
	var b strings.Builder
	b.WriteString(generatedNote)
	b.WriteString(migrationIntro)
	b.WriteString("\n## uWSGI options\n\n| uWSGI option | herd | notes |\n|---|---|---|\n")
	for _, m := range uwsgiMappings {
		herd := "always"
		switch {
		case m.key == "":
		case isOption(m.key):
			herd = "`--" + m.key + "`"
		default:
			herd = "*not supported yet* (`--" + m.key + "`)"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", code("", m.names...), herd, cell(m.note))
	}
	b.WriteString("\nThese stop the start with an error naming them, unless `--ignore-unsupported` (each name covers its family: `route` covers `route-if`, `route-host` ...):\n\n| uWSGI options | instead |\n|---|---|\n")
	for _, u := range uwsgiUnsupported {
		name := u.prefix
		if strings.HasSuffix(name, "-") {
			name += "*"
		}
		fmt.Fprintf(&b, "| `%s` | %s |\n", name, cell(u.instead))
	}
	b.WriteString("\nAny other option uWSGI has is named in the start-up warning.\n")
	b.WriteString("\n## gunicorn settings and flags (gunicorn 27)\n\n| setting | flag | herd | notes |\n|---|---|---|---|\n")
	for _, g := range gunicornOptions {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", g.setting, gunicornFlagCell(g), gunicornHerdCell(g), cell(g.note))
	}
	var others []string
	for _, h := range gunicornHooks {
		if !slices.Contains(gunicornForkHooks, h) {
			others = append(others, h)
		}
	}
	fmt.Fprintf(&b, "| %s | | run by the fork server under `--preload` (preload_app = True); named in the warning without it | |\n", code("", gunicornForkHooks...))
	fmt.Fprintf(&b, "| %s | | server hooks: named in the warning, not run (herd's master runs no Python) | |\n", code("", others...))
	_, err := io.WriteString(w, b.String())
	return err
}

const migrationIntro = "# Moving from uWSGI or gunicorn\n\n" +
	"A uWSGI ini file runs as it is: `herd serve --ini app.ini` (or `--config app.ini`, or\n" +
	"`app.ini:section` for another section than `[uwsgi]`). herd expands `$(ENV)`, `%(option)` (the\n" +
	"value set for an option or placeholder above the line) and uWSGI's magic variables `%d %p %s %n %x %c %k %h %u %U %g %%`\n" +
	"as uWSGI does. A key that only serves as a `%(placeholder)` is fine; any other key uWSGI does not know is an\n" +
	"error naming the nearest option. Options whose work herd would not do (cron jobs, the spooler, mules,\n" +
	"routes, hooks) stop the start with an error naming them, unless `--ignore-unsupported`; other options uWSGI\n" +
	"has and herd does not take are named together in one warning at start-up. Flags, HERD_* variables and the\n" +
	"file combine as usual: flag > environment > file.\n\n" +
	"A gunicorn command line runs as it is: `herd serve -w 4 -k gthread --threads 4 -b 127.0.0.1:8000 -b unix:/run/app.sock -t 30 app:app`.\n" +
	"Every flag of gunicorn 27 is accepted: it sets the herd option that does the same thing, or it is named in one\n" +
	"warning at start-up with what herd does instead, or (`-D`, `--paste`, `--check-config`) herd stops and says what to\n" +
	"do. A misspelt flag, HERD_* variable or file key gets a \"did you mean\".\n\n" +
	"A gunicorn config file runs as it is too: `herd serve -c gunicorn.conf.py` (also `file:PATH` and\n" +
	"`python:MODULE`), and without `-c` herd reads `./gunicorn.conf.py` when no herd.yaml/.yml/.toml/.json is there,\n" +
	"as gunicorn reads it by default. The file is Python: herd has the interpreter of `--python` (or\n" +
	"`--venv`, from a flag or HERD_*) execute it as gunicorn does, with the working directory on\n" +
	"`sys.path`, so imports, `os.environ` and computed values work. Its settings mean what the table below says;\n" +
	"flags and HERD_* variables beat them, as gunicorn's flags beat its file. Other names are the file's\n" +
	"own (imports, helpers, UPPER_CASE constants) and are ignored, as gunicorn ignores them, except a\n" +
	"lowercase name within two letters of a setting (`worker = 4`): gunicorn would silently run without\n" +
	"it, herd stops with an error naming the setting. `GUNICORN_CMD_ARGS` is not read: give HERD_* variables.\n\n" +
	"gunicorn's `access_log_format` atoms (`%(h)s %(l)s %(u)s %(t)s \"%(r)s\" %(s)s %(b)s \"%(f)s\" \"%(a)s\" %(D)s %(L)s %(M)s`,\n" +
	"`%({header}i)s` ...) and uWSGI's `log-format` variables are translated to herd's access-log fields.\n\n" +
	"Rows marked *not supported yet* name an option of herd that is not built yet: herd accepts\n" +
	"the uWSGI option or gunicorn flag and names it in the start-up warning.\n"

func isOption(key string) bool { _, ok := Lookup(key); return ok }

func gunicornFlagCell(g gunicornOption) string {
	var parts []string
	if g.short != "" {
		parts = append(parts, code("-", g.short))
	}
	if len(g.flags) > 0 {
		parts = append(parts, code("--", g.flags...))
	}
	return strings.Join(parts, ", ")
}

func gunicornHerdCell(g gunicornOption) string {
	switch {
	case g.key != "" && isOption(g.key):
		return "`--" + g.key + "`"
	case g.key != "":
		return "*not supported yet* (`--" + g.key + "`)"
	case g.refuse != "":
		return "refused: " + cell(g.refuse)
	case g.unsupported:
		return "stops the start unless `--ignore-unsupported`: " + cell(g.instead)
	case g.instead != "" && g.agrees != nil:
		return "as herd does; otherwise warned: " + cell(g.instead)
	case g.instead != "":
		return "warned, ignored: " + cell(g.instead)
	}
	return "as herd does"
}

func code(prefix string, names ...string) string {
	var parts []string
	for _, n := range names {
		parts = append(parts, "`"+prefix+n+"`")
	}
	return strings.Join(parts, ", ")
}

func cell(s string) string { return strings.ReplaceAll(s, "|", "\\|") }
