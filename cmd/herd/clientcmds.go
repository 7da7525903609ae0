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

// clientCmd is a command that talks to a running master: it finds the master as every such
// command does (findHelp), and run gets the master to call.
func clientCmd(use, short, long, example string, timeout time.Duration, run func(cmd *cobra.Command, master *targetFlags) error) *cobra.Command {
	target := &targetFlags{}
	cmd := &cobra.Command{
		Use: use, Short: short, Long: long + "\n\n" + findHelp, Example: example,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return run(cmd, target) },
	}
	target.register(cmd.Flags(), timeout)
	return cmd
}

func newStatusCmd() *cobra.Command {
	var asJSON bool
	cmd := clientCmd("status", "show a running master's workers: state, generation, requests, current request, memory",
		"Show a running master's workers.", "  herd status\n  herd status --json --pid 1234", 10*time.Second,
		func(cmd *cobra.Command, master *targetFlags) error {
			if asJSON {
				var raw json.RawMessage
				if err := master.call("status", nil, &raw); err != nil {
					return err
				}
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "%s\n", raw)
				return err
			}
			var st admin.Stats
			if err := master.call("status", nil, &st); err != nil {
				return err
			}
			printStatus(cmd.OutOrStdout(), st)
			return nil
		})
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON, for scripts")
	return cmd
}

func newReloadCmd() *cobra.Command {
	return clientCmd("reload", "gracefully reload a running master's workers (as SIGHUP does) and wait for the result",
		"Start a new generation of workers; the old ones stop once the new ones are ready. The exit\n"+
			"status says whether the new generation took over. With --https, the certificate files are\n"+
			"read anew first; a pair that does not load keeps the old certificate and fails the command.",
		"  herd reload --pidfile /run/app.pid", 5*time.Minute,
		func(cmd *cobra.Command, master *targetFlags) error {
			if err := master.call("reload", nil, nil); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "reloaded")
			return nil
		})
}

func newStopCmd() *cobra.Command {
	var fast bool
	cmd := clientCmd("stop", "stop a running master: gracefully (as SIGTERM does) or, with --fast, at once (SIGINT)",
		"Stop a running master. It returns once the master has been told; the master drains first.",
		"  herd stop\n  herd stop --fast --pid 1234", 10*time.Second,
		func(cmd *cobra.Command, master *targetFlags) error {
			if err := master.call("stop", map[string]bool{"graceful": !fast}, nil); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "stopping")
			return nil
		})
	cmd.Flags().BoolVar(&fast, "fast", false, "stop at once, without waiting for requests in flight")
	return cmd
}
