package config

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"
)

// Option describes one setting, derived from the tags of its Config field.
type Option struct {
	Key     string   // flag name and config-file key
	Short   string   // one-letter flag, or ""
	Default string   // as text, parsed like any other value
	Help    string   // one line, for --help
	Doc     string   // the whole meaning, for docs/configuration.md (Help when the tag has none)
	Section string   // the group --help and the docs show it in (gunicorn's sections)
	Enum    []string // the accepted values, when the option is a choice
	// Synonyms are other spellings of enum values, as gunicorn's log levels: warning=warn.
	Synonyms map[string]string
	// Aliases are other flag names of the option, the ones gunicorn users type (tag alias,
	// comma-separated): --bind for --http. Aliases are flags only, not file keys.
	Aliases []string
	// Whole: a list whose items may contain commas (KEY=VALUE pairs); it is split only by
	// repeating the flag, or by newlines in the environment and files (tag list:"whole").
	Whole bool
	field int
	kind  reflect.Type
}

// EnvName is the environment variable that sets the option.
func (o Option) EnvName() string {
	return "HERD_" + strings.ToUpper(strings.ReplaceAll(o.Key, "-", "_"))
}

// Accepts says in words what values the option takes, for errors and docs.
func (o Option) Accepts() string {
	switch {
	case len(o.Enum) > 0:
		return "one of " + strings.Join(o.Enum, ", ")
	case o.kind == durationType:
		return "a duration such as 500ms, 30s or 2m"
	case o.kind == sizeType:
		return "a size in bytes such as 65536, 64KiB, 10MB or 1GiB"
	case o.kind.Kind() == reflect.Int:
		return "an integer"
	case o.kind.Kind() == reflect.Bool:
		return "true or false"
	case o.kind.Kind() == reflect.Slice && o.Whole:
		return "a list (repeat the flag, or separate with newlines)"
	case o.kind.Kind() == reflect.Slice:
		return "a list (repeat the flag, or separate with commas)"
	default:
		return "a string"
	}
}

var (
	durationType = reflect.TypeOf(time.Duration(0))
	sizeType     = reflect.TypeOf(Size(0))

	optionsOnce sync.Once
	options     []Option
)

// Options lists every option in Config field order.
func Options() []Option {
	optionsOnce.Do(func() {
		t := reflect.TypeOf(Config{})
		section := ""
		for i := range t.NumField() {
			f := t.Field(i)
			key := f.Tag.Get("key")
			if key == "" {
				continue
			}
			if s := f.Tag.Get("section"); s != "" {
				section = s // the first field of a section names it for those that follow
			}
			o := Option{
				Key: key, Short: f.Tag.Get("short"), Default: f.Tag.Get("default"),
				Help: f.Tag.Get("help"), Doc: f.Tag.Get("doc"), Section: section, field: i, kind: f.Type,
			}
			if o.Doc == "" {
				o.Doc = o.Help
			}
			if syn := f.Tag.Get("synonyms"); syn != "" {
				o.Synonyms = map[string]string{}
				for _, pair := range strings.Split(syn, ",") {
					from, to, _ := strings.Cut(pair, "=")
					o.Synonyms[from] = to
				}
			}
			if e := f.Tag.Get("enum"); e != "" {
				o.Enum = strings.Split(e, ",")
			}
			if a := f.Tag.Get("alias"); a != "" {
				o.Aliases = strings.Split(a, ",")
			}
			for _, a := range pendingAliases(key) {
				if !slices.Contains(o.Aliases, a) {
					o.Aliases = append(o.Aliases, a)
				}
			}
			o.Whole = f.Tag.Get("list") == "whole"
			options = append(options, o)
		}
	})
	return options
}

// Lookup finds an option by key.
func Lookup(key string) (Option, bool) {
	for _, o := range Options() {
		if o.Key == key {
			return o, true
		}
	}
	return Option{}, false
}

// set parses raw (a string from a flag or the environment, or whatever a config file
// decoded to) into the option's field of c.
func (o Option) set(c *Config, raw any) error {
	field := reflect.ValueOf(c).Elem().Field(o.field)
	switch {
	case o.kind == durationType:
		d, err := parseDuration(raw)
		if err != nil {
			return err
		}
		field.SetInt(int64(d))
	case o.kind == sizeType:
		n, err := ParseSize(fmt.Sprint(raw))
		if err != nil {
			return err
		}
		field.SetInt(int64(n))
	case o.kind.Kind() == reflect.Int:
		n, err := parseInt(raw)
		if err != nil {
			return err
		}
		field.SetInt(int64(n))
	case o.kind.Kind() == reflect.Bool:
		b, err := parseBool(raw)
		if err != nil {
			return err
		}
		field.SetBool(b)
	case o.kind.Kind() == reflect.Slice:
		sep := ","
		if o.Whole {
			sep = "\n"
		}
		field.Set(reflect.ValueOf(parseList(raw, sep)))
	default:
		s := fmt.Sprint(raw)
		if raw == nil {
			s = ""
		}
		if to, ok := o.Synonyms[strings.ToLower(s)]; ok {
			s = to
		}
		if len(o.Enum) > 0 && !contains(o.Enum, s) {
			return fmt.Errorf("%q is not allowed", s)
		}
		field.SetString(s)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func parseInt(raw any) (int, error) {
	switch v := raw.(type) {
	case int:
		return v, nil
	case int64:
		return int(v), nil
	case float64:
		if v != float64(int(v)) {
			return 0, fmt.Errorf("%v is not a whole number", v)
		}
		return int(v), nil
	}
	s := strings.TrimSpace(fmt.Sprint(raw))
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not an integer", s)
	}
	return n, nil
}

func parseBool(raw any) (bool, error) {
	if b, ok := raw.(bool); ok {
		return b, nil
	}
	s := strings.ToLower(strings.TrimSpace(fmt.Sprint(raw)))
	switch s {
	case "1", "true", "yes", "on":
		return true, nil
	case "0", "false", "no", "off", "":
		return false, nil
	}
	return false, fmt.Errorf("%q is not true or false", s)
}

func parseDuration(raw any) (time.Duration, error) {
	switch v := raw.(type) {
	case int, int64, float64:
		// A bare number in a config file means seconds, as in uWSGI and gunicorn.
		n, err := parseFloat(v)
		if err != nil {
			return 0, err
		}
		return time.Duration(n * float64(time.Second)), nil
	}
	s := strings.TrimSpace(fmt.Sprint(raw))
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(n * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration", s)
	}
	return d, nil
}

func parseFloat(v any) (float64, error) {
	switch n := v.(type) {
	case int:
		return float64(n), nil
	case int64:
		return float64(n), nil
	case float64:
		return n, nil
	}
	return 0, fmt.Errorf("%v is not a number", v)
}

// parseList reads a list from a flag ([]string, one item per use), a file (a list, or one
// string) or the environment (one string), splitting strings on sep.
func parseList(raw any, sep string) []string {
	var items []string
	switch v := raw.(type) {
	case nil:
		return nil
	case []string:
		items = v
	case []any:
		for _, x := range v {
			items = append(items, fmt.Sprint(x))
		}
	default:
		items = []string{fmt.Sprint(v)}
	}
	var out []string
	for _, it := range items {
		for _, part := range strings.Split(it, sep) {
			if p := strings.TrimSpace(part); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// Size is a number of bytes, written with an optional unit (KB, KiB, MB, MiB, GB, GiB).
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30},
	{"kb", 1000}, {"mb", 1000 * 1000}, {"gb", 1000 * 1000 * 1000},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"b", 1},
}

// ParseSize reads "65536", "64KiB", "10MB", "1g".
func ParseSize(s string) (Size, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t = strings.TrimSpace(strings.TrimSuffix(t, u.suffix))
			mult = u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(t, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	return Size(n * float64(mult)), nil
}

func (s Size) String() string {
	switch {
	case s > 0 && s%(1<<30) == 0:
		return strconv.FormatInt(int64(s>>30), 10) + "GiB"
	case s > 0 && s%(1<<20) == 0:
		return strconv.FormatInt(int64(s>>20), 10) + "MiB"
	case s > 0 && s%(1<<10) == 0:
		return strconv.FormatInt(int64(s>>10), 10) + "KiB"
	}
	return strconv.FormatInt(int64(s), 10)
}

// textValue is a pflag.Value that keeps the text as given: parsing, with the error that
// names the key, happens once in Load for every source alike.
type textValue struct {
	text    string
	typName string
}

func (v *textValue) String() string     { return v.text }
func (v *textValue) Type() string       { return v.typName }
func (v *textValue) Set(s string) error { v.text = s; return nil }

// listValue keeps each use of a repeated flag as one item; the first use replaces the
// default, as a repeated flag should.
type listValue struct {
	items   []string
	changed bool
}

func (v *listValue) String() string { return strings.Join(v.items, ",") }
func (v *listValue) Type() string   { return "strings" }
func (v *listValue) Set(s string) error {
	if !v.changed {
		v.items = nil
		v.changed = true
	}
	v.items = append(v.items, s)
	return nil
}

// flagValue is what a flag holds, in the form set parses: a list keeps its items apart, so
// an item with a comma in it (an -e KEY=a,b) stays whole.
func flagValue(f *pflag.Flag) any {
	if lv, ok := f.Value.(*listValue); ok {
		return lv.items
	}
	return f.Value.String()
}

// RegisterFlags adds one flag per option to fs, plus a hidden flag per alias that shares the
// option's value: --bind sets exactly what --http sets.
func RegisterFlags(fs *pflag.FlagSet) {
	for _, o := range Options() {
		help := o.Help
		if len(o.Enum) > 0 {
			help += " (" + strings.Join(o.Enum, "|") + ")"
		}
		help += " [" + o.EnvName() + "]"
		var val pflag.Value
		switch {
		case o.kind.Kind() == reflect.Slice:
			val = &listValue{items: parseList(o.Default, ",")}
		default:
			val = &textValue{text: o.Default, typName: typeName(o)}
		}
		f := fs.VarPF(val, o.Key, o.Short, help)
		f.Annotations = map[string][]string{SectionAnnotation: {o.Section}}
		if o.kind.Kind() == reflect.Bool {
			f.NoOptDefVal = "true"
		}
		for _, a := range o.Aliases {
			af := fs.VarPF(val, a, "", "same as --"+o.Key)
			af.NoOptDefVal = f.NoOptDefVal
			af.Hidden = true
		}
	}
	registerGunicornFlags(fs)
}

// SectionAnnotation is the flag annotation that holds an option's section, for --help.
const SectionAnnotation = "herd_section"

// changedFlag returns the flag that set the option on the command line, if any.
func changedFlag(flags *pflag.FlagSet, o Option) *pflag.Flag {
	if flags == nil {
		return nil
	}
	for _, name := range append([]string{o.Key}, o.Aliases...) {
		if f := flags.Lookup(name); f != nil && f.Changed {
			return f
		}
	}
	return nil
}

func typeName(o Option) string {
	switch {
	case o.kind == durationType:
		return "duration"
	case o.kind == sizeType:
		return "size"
	case o.kind.Kind() == reflect.Int:
		return "int"
	case o.kind.Kind() == reflect.Bool:
		return "bool"
	}
	return "string"
}

// Format shows the option's value in c as a user would write it.
func (o Option) Format(c *Config) string {
	field := reflect.ValueOf(c).Elem().Field(o.field)
	switch {
	case o.kind == durationType:
		return time.Duration(field.Int()).String()
	case o.kind == sizeType:
		return Size(field.Int()).String()
	case o.kind.Kind() == reflect.Slice:
		return strings.Join(field.Interface().([]string), ", ")
	}
	return fmt.Sprint(field.Interface())
}
