package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/herd-server/herd/admin"
	"github.com/herd-server/herd/admin/control"
)

// targetFlags choose the master a client command talks to.
type targetFlags struct {
	t       control.Target
	timeout time.Duration
}

func (f *targetFlags) register(fs *pflag.FlagSet, timeout time.Duration) {
	fs.StringVar(&f.t.Socket, "control-socket", "", "the master's control socket (from its start-up log line) [HERD_CONTROL_SOCKET]")
	fs.IntVar(&f.t.Pid, "pid", 0, "the master's pid")
	fs.StringVar(&f.t.Pidfile, "pidfile", "", "a file holding the master's pid")
	fs.DurationVar(&f.timeout, "timeout", timeout, "how long to wait for the master's answer")
}

const findHelp = `The master is found through its control socket: --control-socket PATH, or --pid /
--pidfile, or else the registry of running masters ($XDG_RUNTIME_DIR/herd, or /tmp/herd-UID),
which must then hold exactly one master (or one started in the working directory).`

func (f *targetFlags) call(cmd string, args, result any) error {
	t := f.t
	if t.Socket == "" && t.Pid == 0 && t.Pidfile == "" {
		t.Socket = os.Getenv("HERD_CONTROL_SOCKET") // the variable serve takes too
	}
	path, err := control.Find(t)
	if err != nil {
		return err
	}
	return control.Call(path, cmd, args, result, f.timeout)
}

func newStatusCmd() *cobra.Command {
	var target targetFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "show a running master's workers: state, generation, requests, current request, memory",
		Long:  "Show a running master's workers.\n\n" + findHelp,
		Example: `  herd status
  herd status --json --pid 1234`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st admin.Stats
			if asJSON {
				var raw json.RawMessage
				if err := target.call("status", nil, &raw); err != nil {
					return err
				}
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "%s\n", raw)
				return err
			}
			if err := target.call("status", nil, &st); err != nil {
				return err
			}
			printStatus(cmd.OutOrStdout(), st)
			return nil
		},
	}
	target.register(cmd.Flags(), 10*time.Second)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON, for scripts")
	return cmd
}

func newReloadCmd() *cobra.Command {
	var target targetFlags
	cmd := &cobra.Command{
		Use:   "reload",
		Short: "gracefully reload a running master's workers (as SIGHUP does) and wait for the result",
		Long: "Start a new generation of workers; the old ones stop once the new ones are ready. The exit\n" +
			"status says whether the new generation took over. With --https, the certificate files are\n" +
			"read anew first; a pair that does not load keeps the old certificate and fails the command.\n\n" + findHelp,
		Example: "  herd reload --pidfile /run/app.pid",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := target.call("reload", nil, nil); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "reloaded")
			return nil
		},
	}
	target.register(cmd.Flags(), 5*time.Minute)
	return cmd
}

func newStopCmd() *cobra.Command {
	var target targetFlags
	var fast bool
	cmd := &cobra.Command{
		Use:   "stop",
		Short: "stop a running master: gracefully (as SIGTERM does) or, with --fast, at once (SIGINT)",
		Long:  "Stop a running master. It returns once the master has been told; the master drains first.\n\n" + findHelp,
		Example: `  herd stop
  herd stop --fast --pid 1234`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := target.call("stop", map[string]bool{"graceful": !fast}, nil); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "stopping")
			return nil
		},
	}
	target.register(cmd.Flags(), 10*time.Second)
	cmd.Flags().BoolVar(&fast, "fast", false, "stop at once, without waiting for requests in flight")
	return cmd
}
