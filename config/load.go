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

// DefaultFiles are looked for in the working directory when no --config is given.
var DefaultFiles = []string{"herd.yaml", "herd.yml", "herd.toml", "herd.json"}

// Load builds the Config from flags (already parsed), the HERD_* environment and a config
// file, in that order of precedence, over the defaults. configFile may be empty: then the
// first of DefaultFiles present in the working directory is read, if any. Every bad value is
// reported with its key, where it came from, and what the key accepts.
func Load(flags *pflag.FlagSet, configFile string) (Config, error) {
	v := viper.New() // reads the file only: flags and HERD_* are looked up per option

	file, err := findConfigFile(configFile)
	if err != nil {
		return Config{}, err
	}
	if file != "" {
		v.SetConfigFile(file)
		if err := v.ReadInConfig(); err != nil {
			return Config{}, fmt.Errorf("read config file %s: %w", file, err)
		}
		if err := checkFileKeys(v, file); err != nil {
			return Config{}, err
		}
	}

	var c Config
	var errs []error
	for _, o := range Options() {
		raw, source := lookup(v, flags, o, file)
		if err := o.set(&c, raw); err != nil {
			errs = append(errs, fmt.Errorf("%s (from %s): %w; %s accepts %s", o.Key, source, err, o.Key, o.Accepts()))
		}
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return c, nil
}

// lookup returns the raw value of an option from the strongest source that sets it.
func lookup(v *viper.Viper, flags *pflag.FlagSet, o Option, file string) (any, string) {
	if flags != nil {
		if f := flags.Lookup(o.Key); f != nil && f.Changed {
			return f.Value.String(), "flag --" + o.Key
		}
	}
	if s, ok := os.LookupEnv(o.EnvName()); ok {
		return s, "environment " + o.EnvName()
	}
	if file != "" && v.InConfig(o.Key) {
		return v.Get(o.Key), "config file " + file
	}
	return o.Default, "default"
}

func findConfigFile(given string) (string, error) {
	if given != "" {
		if _, err := os.Stat(given); err != nil {
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
