package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"time"

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
		Version:       herdVersion(),
	}
	root.SetVersionTemplate(versionLine())
	root.SetFlagErrorFunc(suggestFlag)
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
			fmt.Fprint(cmd.OutOrStdout(), versionLine())
			return nil
		},
	}
}

// versionLine is what `herd version` and `herd --version` print.
func versionLine() string {
	return fmt.Sprintf("herd %s (%s, %s/%s)\n", herdVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// herdVersion is the release (-ldflags, or the module version of go install ...@v1.2.3), or
// for a build from a checkout what the VCS says, in Go's pseudo-version form:
// 0.0.0-20260102150405-abcdef123456, +dirty with uncommitted changes. Never "dev": herd top
// and /stats show it, and a production server built from source must not read as herd dev.
func herdVersion() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return vcsVersion(bi.Settings)
}

func vcsVersion(settings []debug.BuildSetting) string {
	var rev, at string
	dirty := false
	for _, s := range settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "(devel)" // built without VCS information (go build -buildvcs=false)
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	stamp := "00000000000000"
	if t, err := time.Parse(time.RFC3339, at); err == nil {
		stamp = t.UTC().Format("20060102150405")
	}
	v := "0.0.0-" + stamp + "-" + rev
	if dirty {
		v += "+dirty"
	}
	return v
}
