package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/herd-server/herd/config"
)

// sectionedFlags shows a command's flags grouped by the sections of the Config (as
// gunicorn's settings are grouped), one line per flag; the flags that are no option (--config,
// --ini, --help) come first. width 0 means no wrapping.
func sectionedFlags(fs *pflag.FlagSet, width int) string {
	var order []string
	groups := map[string]*pflag.FlagSet{}
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		name := "Config file"
		if s := f.Annotations[config.SectionAnnotation]; len(s) > 0 {
			name = s[0]
		}
		g, ok := groups[name]
		if !ok {
			g = pflag.NewFlagSet(name, pflag.ContinueOnError)
			g.SortFlags = false
			groups[name] = g
			order = append(order, name)
		}
		g.AddFlag(f)
	})
	// VisitAll goes in name order; the sections go in the Config's order, the config file first.
	var sections []string
	if groups["Config file"] != nil {
		sections = append(sections, "Config file")
	}
	for _, o := range config.Options() {
		if groups[o.Section] != nil && !slices.Contains(sections, o.Section) {
			sections = append(sections, o.Section)
		}
	}
	var b strings.Builder
	for _, name := range sections {
		g := groups[name]
		if name != "Config file" {
			g = inOptionOrder(g)
		}
		fmt.Fprintf(&b, "\n%s:\n%s", name, g.FlagUsagesWrapped(width))
	}
	return b.String()
}

// inOptionOrder rebuilds a section's flag set in the Config's field order.
func inOptionOrder(g *pflag.FlagSet) *pflag.FlagSet {
	out := pflag.NewFlagSet(g.Name(), pflag.ContinueOnError)
	out.SortFlags = false
	for _, o := range config.Options() {
		if f := g.Lookup(o.Key); f != nil {
			out.AddFlag(f)
		}
	}
	return out
}

// useSectionedHelp makes cmd's --help show its flags by section.
func useSectionedHelp(cmd *cobra.Command) {
	cobra.AddTemplateFunc("sectionedFlags", func(c *cobra.Command) string { return sectionedFlags(c.LocalFlags(), 0) })
	tmpl := cmd.UsageTemplate()
	tmpl = strings.Replace(tmpl, `{{if .HasAvailableLocalFlags}}

Flags:
{{.LocalFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}`, `{{if .HasAvailableLocalFlags}}
{{sectionedFlags . | trimTrailingWhitespaces}}{{end}}`, 1)
	cmd.SetUsageTemplate(tmpl)
}

// suggestFlag adds "did you mean" to an unknown flag's error, from every flag of the command
// (gunicorn's hidden ones too).
func suggestFlag(cmd *cobra.Command, err error) error {
	msg := err.Error()
	name, ok := strings.CutPrefix(msg, "unknown flag: --")
	if !ok {
		return err
	}
	var names []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
	if near := config.Nearest(name, names); near != "" {
		return errors.New(msg + " (did you mean --" + near + "?)")
	}
	return err
}
