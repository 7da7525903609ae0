package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-server/herd/internal/herdtest"
)

// TestMissingModuleNamesTheInterpreter: an app whose import fails for a module that is not
// installed (the usual cause: a virtualenv herd was not told about) makes herd serve and
// herd check say which interpreter looked for it and how to give another, besides the
// traceback; herd check's table is not interleaved with the throwaway worker's start-up lines.
func TestMissingModuleNamesTheInterpreter(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "needsvenv.py"), []byte("import flask_not_installed_here\napp = None\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"serve", "needsvenv:app", "--http", herdtest.FreeAddr(t), "--workers", "1"},
		{"check", "needsvenv:app"},
	} {
		r := herdtest.Run(t, dir, nil, args...)
		if r.Code != exitAppBoot {
			t.Fatalf("herd %s: exit %d, want %d\n%s", args[0], r.Code, exitAppBoot, r.Stderr)
		}
		for _, want := range []string{"No module named 'flask_not_installed_here'", "was looked for by /", "--venv DIR or --python PATH"} {
			if !strings.Contains(r.Stderr, want) {
				t.Errorf("herd %s: stderr lacks %q:\n%s", args[0], want, r.Stderr)
			}
		}
		if args[0] == "check" && strings.Contains(r.Stderr, "worker ready") {
			t.Errorf("herd check logged the worker's start-up lines:\n%s", r.Stderr)
		}
	}
}
