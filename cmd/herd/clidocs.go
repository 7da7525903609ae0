package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// writeCLIDoc writes docs/cli.md, the man-page style reference of every command, from the
// cobra commands themselves: their help, examples and flags.
func writeCLIDoc(w io.Writer, root *cobra.Command) error {
	var b strings.Builder
	b.WriteString("<!-- Generated from the cobra commands by `go generate ./config` (herd config --docs docs). Do not edit by hand. -->\n\n")
	b.WriteString("# herd commands\n\nEvery option of serve and check is described in [configuration.md](configuration.md).\n")
	for _, c := range root.Commands() {
		if !c.IsAvailableCommand() || c.Name() == "help" || c.Name() == "completion" {
			continue
		}
		fmt.Fprintf(&b, "\n## herd %s\n\n", c.Name())
		long := c.Long
		if long == "" {
			long = c.Short
		}
		fmt.Fprintf(&b, "%s\n\n```\n%s\n```\n", strings.TrimSpace(long), c.UseLine())
		if c.Example != "" {
			fmt.Fprintf(&b, "\nExamples:\n\n```\n%s\n```\n", strings.TrimRight(c.Example, "\n"))
		}
		if flags := sectionedFlags(c.LocalFlags(), 100); strings.TrimSpace(flags) != "" {
			fmt.Fprintf(&b, "\nFlags:\n\n```%s```\n", flags)
		}
	}
	b.WriteString("\n## Shell completion\n\n`herd completion bash|zsh|fish|powershell` prints a completion script; e.g.\n" +
		"`herd completion bash > /etc/bash_completion.d/herd`.\n")
	_, err := io.WriteString(w, b.String())
	return err
}
