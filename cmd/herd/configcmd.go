package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"

	"github.com/herd-server/herd/config"
)

// configFlags are the flags that choose the config file, shared by serve and check.
type configFlags struct {
	file string
	ini  string
}

// register adds --config, --ini and every option's flag to cmd, with shell completion of
// the options that take one of a few values.
func (c *configFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVarP(&c.file, "config", "c", "", "config file: herd.yaml/.toml/.json, uWSGI FILE.ini[:SECTION] or gunicorn FILE.py (default: ./herd.yaml ..., else ./gunicorn.conf.py)")
	fs.StringVar(&c.ini, "ini", "", "uWSGI .ini file to read, as uwsgi --ini reads it (FILE or FILE:SECTION)")
	config.RegisterFlags(fs)
	useSectionedHelp(cmd)
	for _, o := range config.Options() {
		if len(o.Enum) > 0 {
			_ = cmd.RegisterFlagCompletionFunc(o.Key, cobra.FixedCompletions(o.Enum, cobra.ShellCompDirectiveNoFileComp))
		}
	}
	_ = cmd.MarkFlagFilename("ini", "ini")
	_ = cmd.MarkFlagFilename("config", "yaml", "yml", "toml", "json", "ini", "py")
}

// resolve loads the configuration of a serve-like command: flags, environment, file,
// defaults; the positional app argument counts as a flag.
func (c *configFlags) resolve(cmd *cobra.Command, args []string) (config.Loaded, error) {
	var l config.Loaded
	var err error
	switch {
	case c.ini != "" && c.file != "":
		return l, fmt.Errorf("give --config or --ini, not both")
	case c.ini != "":
		l, err = config.ResolveUWSGI(cmd.Flags(), c.ini)
	default:
		l, err = config.Resolve(cmd.Flags(), c.file)
	}
	if err != nil {
		return l, err
	}
	if len(args) == 1 {
		l.Config.App = args[0]
		l.Sources["app"] = "argument"
	}
	if err := l.Config.Validate(); err != nil {
		return l, err
	}
	return l, nil
}

func newConfigCmd() *cobra.Command {
	var docsDir string
	cmd := &cobra.Command{
		Use:   "config --docs DIR",
		Short: "write the configuration reference and the migration table, generated from the one Config",
		Long: `Write docs generated from herd's one Config and its commands: DIR/configuration.md (every
option, its flag, environment variable, default and meaning), DIR/migration.md (uWSGI option /
gunicorn flag / herd) and DIR/cli.md (every command's help, examples and flags). ` + "`go generate ./config`" + ` runs it for the repository's docs/.`,
		Example: "  herd config --docs docs",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if docsDir == "" {
				return fmt.Errorf("--docs DIR is required")
			}
			return writeDocs(docsDir)
		},
	}
	cmd.Flags().StringVar(&docsDir, "docs", "", "directory to write configuration.md and migration.md into")
	return cmd
}

func writeDocs(dir string) error {
	names := []string{"cli.md"}
	for name := range config.DocFiles {
		names = append(names, name)
	}
	slices.Sort(names)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("docs directory: %w", err)
	}
	generators := map[string]func(io.Writer) error{
		"cli.md": func(w io.Writer) error { return writeCLIDoc(w, newRootCmd()) },
	}
	for name, gen := range config.DocFiles {
		generators[name] = gen
	}
	for _, name := range names {
		var b bytes.Buffer
		if err := generators[name](&b); err != nil {
			return fmt.Errorf("generate %s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}
