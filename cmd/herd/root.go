package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set by the build (-ldflags "-X main.version=..."); otherwise it comes from the
// module's build info.
var version = ""

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "herd",
		Short:         "herd serves Python WSGI apps through supervised Python workers",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCmd(), newDevCmd(), newCheckCmd(), newStatusCmd(), newReloadCmd(), newStopCmd(), newTopCmd(), newConfigCmd(), newVersionCmd())
	// cobra adds its completion command at Execute; made now, its help gets examples too.
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			c.Example = `  source <(herd completion bash)                    # this shell
  herd completion bash > /etc/bash_completion.d/herd  # every new shell
  herd completion zsh > "${fpath[1]}/_herd"`
		}
	}
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "print herd's version",
		Example: "  herd version",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "herd %s (%s, %s/%s)\n", herdVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}

func herdVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
