package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/herd-server/herd/config"
	"github.com/herd-server/herd/server"
	"github.com/herd-server/herd/supervisor"
	"github.com/herd-server/herd/supervisor/spawn"
)

func newCheckCmd() *cobra.Command {
	var files configFlags
	cmd := &cobra.Command{
		Use:   "check [module:callable]",
		Short: "check the configuration and import the app once, without serving",
		Long: `Check that herd serve would start: load the configuration exactly as serve does (flags,
HERD_* environment, config file or uWSGI .ini), print every option's effective value and where
it came from, load the --https certificate, then import the app once in a throwaway worker,
run as --uid/--gid when given (which, as for serve, needs root). No listener is opened.

Exit status: 0 when serve would start, 1 when the configuration is wrong, 3 when the app
cannot be imported (the traceback is printed).`,
		Example: `  herd check myproject.wsgi --chdir /srv/app
  herd check --ini uwsgi.ini
  herd check -c gunicorn.conf.py
  sudo herd check myproject.wsgi --uid www-data --gid www-data`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			l, err := files.resolve(cmd, args)
			if l.Sources != nil {
				printEffective(out, &l)
			}
			if err != nil {
				return err
			}
			cred, err := spawn.Credential(l.Config.UID, l.Config.GID)
			if err != nil {
				return err
			}
			log, err := server.NewLogger(&l.Config, os.Stderr)
			if err != nil {
				return err
			}
			if l.Config.LogLevel == "info" {
				// The throwaway worker's start-up lines would come between the table and
				// the verdict: only its warnings and errors (a traceback) are news here.
				log = log.Level(zerolog.WarnLevel)
			}
			if err := server.CheckCertificate(&l.Config, log); err != nil {
				return err
			}
			start := time.Now()
			python, err := server.ImportApp(&l.Config, log, cred)
			if err != nil {
				// The worker's traceback is in the log (stderr) already.
				err = fmt.Errorf("check failed: the app %q could not be imported: %w", l.Config.App, err)
				var boot *supervisor.BootError
				if errors.As(err, &boot) {
					if hint := missingModuleHint(boot, python); hint != "" {
						err = fmt.Errorf("%w\n%s", err, hint)
					}
				}
				return &exitCodeError{code: exitAppBoot, err: err}
			}
			as := ""
			if cred != nil {
				as = fmt.Sprintf(" as uid %d gid %d", cred.Uid, cred.Gid)
			}
			fmt.Fprintf(out, "\nok: %s imported by %s%s in %s; herd serve would start\n", l.Config.App, python, as, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	files.register(cmd)
	return cmd
}

// printEffective writes every option's value and its source, then the warnings.
func printEffective(w io.Writer, l *config.Loaded) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "OPTION\tVALUE\tFROM")
	for _, o := range config.Options() {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", o.Key, o.Format(&l.Config), l.Sources[o.Key])
	}
	_ = tw.Flush()
	for _, warning := range l.Warnings {
		fmt.Fprintf(w, "\nwarning: %s\n", warning)
	}
}
