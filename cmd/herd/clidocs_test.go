package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-server/herd/internal/herdtest"
)

// TestCLIDocUpToDate fails when docs/cli.md no longer matches the commands: run
// `go generate ./config`.
func TestCLIDocUpToDate(t *testing.T) {
	var b strings.Builder
	if err := writeCLIDoc(&b, newRootCmd()); err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile(filepath.Join(herdtest.RepoRoot(t), "docs", "cli.md"))
	if err != nil || string(committed) != b.String() {
		t.Fatalf("docs/cli.md is stale (%v): run `go generate ./config` and commit the result", err)
	}
}
