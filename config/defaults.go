package config

import "fmt"

// SetDefault gives key another default: value replaces it when nothing but its default set
// it. A command that is a shorthand (herd dev) has its own defaults, which flags, HERD_*
// variables and the config file still override.
func (l *Loaded) SetDefault(key, value string) error {
	if l.Sources[key] != "default" {
		return nil
	}
	o, ok := Lookup(key)
	if !ok {
		return fmt.Errorf("config: no option %q", key)
	}
	if err := o.set(&l.Config, value); err != nil {
		return fmt.Errorf("config: default %s=%s: %w", key, value, err)
	}
	return nil
}
