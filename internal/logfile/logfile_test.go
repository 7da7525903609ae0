package logfile

import (
	"os"
	"path/filepath"
	"testing"
)

// TestReopenAfterRotation is what logrotate does: move the file away, signal, and expect
// new lines in a new file at the old path while the moved one keeps what it had.
func TestReopenAfterRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := Open(path); again != f {
		t.Fatal("a second Open of the same path made a second File")
	}
	if _, err := f.Write([]byte("one\n")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("two\n")); err != nil { // still the moved file
		t.Fatal(err)
	}
	paths, err := ReopenAll()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range paths {
		found = found || p == path
	}
	if !found {
		t.Fatalf("ReopenAll reopened %v, not %s", paths, path)
	}
	if _, err := f.Write([]byte("three\n")); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{path + ".1": "one\ntwo\n", path: "three\n"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != want {
			t.Errorf("%s holds %q, want %q", filepath.Base(file), b, want)
		}
	}
}
