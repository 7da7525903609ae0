package main

import "github.com/spf13/cobra"

// devDefaults make `herd dev` the development setup: readable logs, reload on, and one
// worker of four threads, as Django's runserver and Flask's debug server serve: a reload then
// starts one Python process, not one per core, which is what keeps it fast. Flags, HERD_*
// variables and the config file still override them.
var devDefaults = map[string]string{"reload": "true", "workers": "1", "threads": "4", "log-format": "console"}

func newDevCmd() *cobra.Command {
	var files configFlags
	cmd := &cobra.Command{
		Use:   "dev [module:callable]",
		Short: "serve an app for development: reload on every save, import errors in the browser",
		Long: `Serve a WSGI app for development: herd serve --reload --workers 1 --threads 4
--log-format console.

Saving a .py file under the app's directory (--chdir, else the working directory) or a
--pythonpath directory, or anything --reload-extra names, reloads the workers through a new
generation: requests made meanwhile are answered. While the code on disk does not import,
at start or after a save, every request gets an HTML page with the traceback, and the
terminal shows it once; saving a fix serves the new code, without restarting herd. __pycache__, *.pyc, .git, virtualenvs
and editor swap and backup files are ignored.

The error page shows source code to whoever asks: serve on loopback only.`,
		Example: "  herd dev app:app\n  herd dev mysite.wsgi --reload-extra 'templates/**/*.html' --reload-extra .env",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := files.resolve(cmd, args)
			if err != nil {
				return err
			}
			for key, value := range devDefaults {
				if err := l.SetDefault(key, value); err != nil {
					return err
				}
			}
			if err := logWarnings(&l); err != nil {
				return err
			}
			return runServer(cmd.Context(), &l.Config)
		},
	}
	files.register(cmd)
	for key, value := range devDefaults {
		cmd.Flags().Lookup(key).DefValue = value // what --help shows; SetDefault gives the value
	}
	return cmd
}
