package spawn

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// realPython is Debian's interpreter: an ELF binary, not pyenv's shim script.
func realPython(t *testing.T) string {
	t.Helper()
	return herdtest.RequireTool(t, "/usr/bin/python3", "python3")
}

// TestResolvePythonRemembers: a real interpreter's check is made once and noted in the cache;
// a shim's is made every time; a binary that changed is checked again.
func TestResolvePythonRemembers(t *testing.T) {
	python := realPython(t)
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	path, note := knownPython(python)
	if path != python || note == "" {
		t.Fatalf("knownPython(%s) = %q, %q", python, path, note)
	}
	if _, err := os.Stat(note); err == nil {
		t.Fatal("noted before any check")
	}
	got, err := ResolvePython(python)
	if err != nil || got != python {
		t.Fatalf("ResolvePython: %q, %v", got, err)
	}
	if b, err := os.ReadFile(note); err != nil || !strings.Contains(string(b), "Python 3.") {
		t.Fatalf("note after the check: %q, %v", b, err)
	}

	// A shim (a script) is asked every time: its answer depends on where and how it runs.
	shim := filepath.Join(t.TempDir(), "python3")
	if err := os.WriteFile(shim, []byte("#!/bin/sh\nexec "+python+" \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, note := knownPython(shim); note != "" {
		t.Fatalf("a shim has a note: %s", note)
	}
	if got, err := ResolvePython(shim); err != nil || got != python {
		t.Fatalf("ResolvePython(shim): %q, %v", got, err)
	}
}

// TestResolvePythonNoteSkipsTheCheck: with a note, no interpreter runs. Shown with an ELF
// binary that is no Python at all: asked, it would fail the check.
func TestResolvePythonNoteSkipsTheCheck(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	b, err := os.ReadFile(herdtest.RequireTool(t, "true", "coreutils"))
	if err != nil {
		t.Fatal(err)
	}
	fake := filepath.Join(t.TempDir(), "python3")
	if err := os.WriteFile(fake, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := ResolvePython(fake); err == nil {
		t.Fatal("true(1) passed as a Python")
	}
	path, note := knownPython(fake)
	if note == "" {
		t.Fatal("no note for an ELF binary")
	}
	if err := os.WriteFile(note, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := ResolvePython(fake); err != nil || got != path {
		t.Fatalf("with a note: %q, %v; want %q without asking", got, err, path)
	}
	// The same path with another binary behind it (an upgrade) has another note.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(fake, later, later); err != nil {
		t.Fatal(err)
	}
	if _, err := ResolvePython(fake); err == nil {
		t.Fatal("a changed binary was not checked again")
	}
}
