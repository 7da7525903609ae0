package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/herd-server/herd/config"
	"github.com/herd-server/herd/server"
	"github.com/herd-server/herd/supervisor"
	"github.com/spf13/cobra"
)

func newServeCmd() *cobra.Command {
	var files configFlags
	cmd := &cobra.Command{
		Use:   "serve [module:callable]",
		Short: "serve a WSGI app through supervised Python workers",
		Long: `Serve a WSGI app through supervised Python workers.

Every option can also be set with its HERD_* environment variable or in a config file
(herd.yaml, herd.toml or herd.json in the working directory, or --config FILE).
Precedence: flag > environment > config file > default.

uWSGI and gunicorn deployments move as they are: --ini app.ini reads a uWSGI [uwsgi]
section, and gunicorn's flags (-w, -b, --threads, --timeout, --access-logfile ...) mean
what they mean in gunicorn. Options herd does not take are named in one warning.

Signals: HUP graceful reload (a new generation of workers; a generation that cannot import
the app never replaces a working one; the --https certificate is read anew), TERM graceful stop (requests in flight finish), INT and
QUIT fast stop, TTIN / TTOU one worker more / less, USR1 reopen the --log-file and
--access-log files (after logrotate moved them), USR2 upgrade: start the herd binary anew
on the same listening sockets, then drain and exit once it serves.`,
		Example: `  herd serve hello:app --http 127.0.0.1:8000 --workers 4
  herd serve --ini uwsgi.ini
  herd serve -w 4 -b 0.0.0.0:8000 -b unix:/run/app.sock --chdir /srv/app myproject.wsgi`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := files.resolve(cmd, args)
			if err != nil {
				return err
			}
			if err := logWarnings(&l); err != nil {
				return err
			}
			return runServer(cmd.Context(), &l.Config)
		},
	}
	files.register(cmd)
	return cmd
}

// runServer runs the master, and gives its failure the exit status its kind calls for: 3
// when no worker could load the app (its traceback printed last, where a terminal shows
// it), 1 for anything else.
func runServer(ctx context.Context, cfg *config.Config) error {
	err := server.New(cfg, herdVersion()).Run(ctx)
	var appErr *server.AppBootError
	if !errors.As(err, &appErr) {
		return err
	}
	var boot *supervisor.BootError
	if errors.As(err, &boot) {
		fmt.Fprintf(os.Stderr, "\nherd: the app %q could not be loaded:\n\n%s\n", cfg.App, strings.TrimRight(boot.Traceback, "\n"))
		if hint := missingModuleHint(boot, cfg.Python); hint != "" {
			fmt.Fprintf(os.Stderr, "\nherd: %s\n", hint)
		}
	}
	return &exitCodeError{code: exitAppBoot, err: err}
}

// missingModuleHint says, for an app that failed to import a module, which interpreter
// looked for it and how to name another: the usual cause is a virtualenv herd was not told
// about. "" for any other failure.
func missingModuleHint(boot *supervisor.BootError, python string) string {
	_, name, ok := strings.Cut(boot.Message, "No module named ")
	if !ok {
		return ""
	}
	return fmt.Sprintf("the module %s was looked for by %s; if it is installed for another Python (a virtualenv), give --venv DIR or --python PATH",
		strings.TrimSpace(name), python)
}
