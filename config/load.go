package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// DefaultFiles are looked for in the working directory when no --config is given; the
// first found is read. gunicorn.conf.py comes last: gunicorn reads it from its working
// directory by default, so a gunicorn deployment keeps its settings under herd.
var DefaultFiles = []string{"herd.yaml", "herd.yml", "herd.toml", "herd.json", gunicornDefaultFile}

const gunicornDefaultFile = "gunicorn.conf.py"

// Loaded is a Config with where each value came from.
type Loaded struct {
	Config Config
	// Sources says, per option key, what set it: "flag --bind", "environment HERD_HTTP",
	// "config file herd.yaml", "uWSGI file app.ini (processes)" or "default".
	Sources map[string]string
	// File is the config file read, "" when none.
	File string
	// Warnings are to be logged at start: options of a foreign file or command line herd
	// does not take, and HERD_* variables that look like a misspelt option.
	Warnings []string
}

// fileNotes is what a reader of a foreign config file says beside the values: at most one
// warning naming what herd does not take, and the options that ask for work herd does not
// do (uWSGI's cron, spooler ...), each with a word on what to do instead.
type fileNotes struct {
	warnings    []string
	unsupported []string
	// A gunicorn file's: what herd does not take (its warning is written once the whole
	// configuration is known), from where, and the server hooks it defines.
	ignored []string
	from    string
	hooks   []string
}

// Load builds the Config from flags (already parsed), the HERD_* environment and a config
// file, in that order of precedence, over the defaults. configFile may be empty: then the
// first of DefaultFiles present in the working directory is read, if any. Every bad value is
// reported with its key, where it came from, and what the key accepts.
func Load(flags *pflag.FlagSet, configFile string) (Config, error) {
	l, err := Resolve(flags, configFile)
	return l.Config, err
}

// Resolve is Load that also tells where each value came from. A configFile ending in .ini
// (or naming a section, app.ini:prod) is read as a uWSGI file.
func Resolve(flags *pflag.FlagSet, configFile string) (Loaded, error) {
	return resolve(flags, configFile, false)
}

// ResolveUWSGI is Resolve with the file read as a uWSGI .ini whatever its name (--ini).
func ResolveUWSGI(flags *pflag.FlagSet, iniFile string) (Loaded, error) {
	return resolve(flags, iniFile, true)
}

func resolve(flags *pflag.FlagSet, configFile string, forceINI bool) (Loaded, error) {
	file, err := findConfigFile(configFile)
	if err != nil {
		return Loaded{}, err
	}
	l := Loaded{Sources: map[string]string{}, File: file}
	var values map[string]fileValue
	var notes fileNotes
	switch {
	case file == "":
	case forceINI || isINI(file):
		values, notes, err = ReadUWSGI(file)
	case isGunicornFile(file):
		values, notes, err = ReadGunicorn(file, pythonBeforeFile(flags))
	default:
		values, err = readFile(file)
	}
	l.Warnings = notes.warnings
	if err != nil {
		return Loaded{}, err
	}
	if _, statErr := os.Stat(gunicornDefaultFile); configFile == "" && file != "" && file != gunicornDefaultFile && statErr == nil {
		l.Warnings = append(l.Warnings, fmt.Sprintf("%s is not read: %s is (give -c %s to read that one instead)", gunicornDefaultFile, file, gunicornDefaultFile))
	}

	var errs []error
	for _, o := range Options() {
		raw, source := lookup(flags, o, values)
		l.Sources[o.Key] = source
		if err := o.set(&l.Config, raw); err != nil {
			errs = append(errs, fmt.Errorf("%s (from %s): %w; %s accepts %s", o.Key, source, err, o.Key, o.Accepts()))
		}
	}
	if len(errs) > 0 {
		return Loaded{}, errors.Join(errs...)
	}
	noDefaultHTTP(&l)
	if notes.from != "" {
		ignored := notes.ignored
		if item := l.takeGunicornHooks(notes.hooks, file); item != "" {
			ignored = append(ignored, item)
		}
		l.Warnings = append(gunicornVerdict{ignored: ignored}.warning(notes.from), l.Warnings...)
	}
	verdict := gunicornFlagVerdict(flags, &l)
	if len(verdict.refused) > 0 {
		return Loaded{}, fmt.Errorf("%s", strings.Join(verdict.refused, "\n"))
	}
	l.Warnings = append(l.Warnings, verdict.warning("gunicorn flags")...)
	if err := l.unsupported(append(notes.unsupported, verdict.unsupported...)); err != nil {
		return Loaded{}, err
	}
	l.Warnings = append(l.Warnings, envTypos(os.Environ())...)
	return l, nil
}

// unsupported stops the start when the configuration asks for work herd would not do,
// unless --ignore-unsupported says to go on without it: then it is a warning.
func (l *Loaded) unsupported(what []string) error {
	if len(what) == 0 {
		return nil
	}
	list := strings.Join(what, "; ")
	if !l.Config.IgnoreUnsupported {
		return fmt.Errorf("herd does not do what these options ask for, and will not start without it silently: %s. "+
			"Give --ignore-unsupported (HERD_IGNORE_UNSUPPORTED=1) to start without them", list)
	}
	l.Warnings = append(l.Warnings, "started without (--ignore-unsupported): "+list)
	return nil
}

// herdInternalEnv are HERD_* variables herd and its tests use that are no option.
var herdInternalEnv = []string{"HERD_UPGRADE_FROM", "HERD_LISTEN_FROM_PARENT"}

// envTypos warns about HERD_* variables that name no option but nearly spell one
// (HERD_WOKERS=3): such a variable would otherwise be ignored without a word.
func envTypos(environ []string) []string {
	var known []string
	for _, o := range Options() {
		known = append(known, o.EnvName())
	}
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "HERD_") || slices.Contains(known, name) || slices.Contains(herdInternalEnv, name) {
			continue
		}
		if near := Nearest(name, known); near != "" && editDistance(name, near) <= 2 {
			out = append(out, fmt.Sprintf("environment variable %s is no herd option and is ignored (did you mean %s?)", name, near))
		}
	}
	slices.Sort(out)
	return out
}

// noDefaultHTTP drops the default HTTP listener when uwsgi sockets or HTTPS listeners are
// given and no source asked for plain HTTP: a uWSGI ini with only socket = (for nginx's
// uwsgi_pass) opens that socket alone under uWSGI, and a site given only --https must not
// also answer plain HTTP on 127.0.0.1:8000.
func noDefaultHTTP(l *Loaded) {
	if l.Sources["http"] != "default" {
		return
	}
	switch {
	case len(l.Config.UwsgiSocket) > 0:
		l.Config.HTTP = nil
		l.Sources["http"] = "default (none: uwsgi-socket is set)"
	case len(l.Config.HTTPS) > 0:
		l.Config.HTTP = nil
		l.Sources["http"] = "default (none: https is set)"
	}
}

// fileValue is one option's raw value from a config file and where in it.
type fileValue struct {
	raw    any
	source string
}

// lookup returns the raw value of an option from the strongest source that sets it.
func lookup(flags *pflag.FlagSet, o Option, file map[string]fileValue) (any, string) {
	if f := changedFlag(flags, o); f != nil {
		return flagValue(f), "flag --" + f.Name
	}
	if s, ok := os.LookupEnv(o.EnvName()); ok {
		return s, "environment " + o.EnvName()
	}
	if v, ok := file[o.Key]; ok {
		return v.raw, v.source
	}
	return o.Default, "default"
}

// readFile reads a YAML, TOML or JSON file with viper.
func readFile(file string) (map[string]fileValue, error) {
	v := viper.New()
	v.SetConfigFile(file)
	if err := v.ReadInConfig(); err != nil {
		return nil, fmt.Errorf("read config file %s: %w", file, err)
	}
	if err := checkFileKeys(v, file); err != nil {
		return nil, err
	}
	values := map[string]fileValue{}
	for _, o := range Options() {
		if v.InConfig(o.Key) {
			values[o.Key] = fileValue{raw: v.Get(o.Key), source: "config file " + file}
		}
	}
	return values, nil
}

func isINI(file string) bool {
	path, _ := splitINISection(file)
	return strings.EqualFold(filepath.Ext(path), ".ini")
}

// pythonBeforeFile is the interpreter that evaluates a gunicorn config file: --python or
// --venv from a flag, the environment or the default, as the file cannot set them.
func pythonBeforeFile(flags *pflag.FlagSet) string {
	pythonOpt, _ := Lookup("python")
	venvOpt, _ := Lookup("venv")
	python, _ := lookup(flags, pythonOpt, nil)
	venv, _ := lookup(flags, venvOpt, nil)
	p, v := fmt.Sprint(python), fmt.Sprint(venv)
	if v != "" && p == pythonOpt.Default {
		return strings.TrimRight(v, "/") + "/bin/python"
	}
	return p
}

func findConfigFile(given string) (string, error) {
	if strings.HasPrefix(given, "python:") {
		return given, nil // a module on the path, as gunicorn's -c python:MODULE
	}
	if given != "" {
		path, _ := splitINISection(strings.TrimPrefix(given, "file:"))
		if _, err := os.Stat(path); err != nil {
			return "", fmt.Errorf("config: %w", err)
		}
		return given, nil
	}
	for _, name := range DefaultFiles {
		if _, err := os.Stat(name); err == nil {
			return name, nil
		}
	}
	return "", nil
}

// checkFileKeys refuses keys no option has, naming the nearest known one: a typo in a
// config file must not be silently ignored.
func checkFileKeys(v *viper.Viper, file string) error {
	var known []string
	for _, o := range Options() {
		known = append(known, o.Key)
	}
	var bad []string
	for _, k := range v.AllKeys() {
		if !v.InConfig(k) || slices.Contains(known, k) {
			continue
		}
		top, _, _ := strings.Cut(k, ".")
		if slices.Contains(known, top) {
			continue
		}
		msg := fmt.Sprintf("unknown key %q", k)
		if near := Nearest(k, known); near != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", near)
		}
		bad = append(bad, msg)
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		return fmt.Errorf("config file %s: %s", filepath.Base(file), strings.Join(bad, "; "))
	}
	return nil
}

// Nearest returns the candidate closest to s by edit distance, if it is close enough to be
// a plausible typo.
func Nearest(s string, candidates []string) string {
	best, bestDist := "", len(s)/2+2
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
