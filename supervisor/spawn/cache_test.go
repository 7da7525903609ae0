package spawn

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/herd-server/herd/internal/herdtest"
)

// TestPrivateDir: a cache directory is used only when no other user can change what its path
// names, through any directory or symbolic link on the way.
func TestPrivateDir(t *testing.T) {
	root := t.TempDir() // under /tmp: sticky and writable by all, which is safe
	mkdir := func(name string, mode os.FileMode) string {
		p := filepath.Join(root, name)
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		return p
	}
	link := func(name, target string) string {
		p := filepath.Join(root, name)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	private := mkdir("private", 0o755)
	open := mkdir("open", 0o777)
	sticky := mkdir("sticky", 0o777|os.ModeSticky)
	mkdir("private/cache", 0o700)
	mkdir("open/cache", 0o700)
	link("to-private", "private")
	link("to-open", filepath.Join(root, "open"))
	link("loop-a", "loop-b")
	link("loop-b", "loop-a")
	link("dotdot", "private/../open")

	for _, c := range []struct {
		path string
		real string // "" when refused
		why  error  // errUnsafeCache when refused for that reason
	}{
		{path: filepath.Join(private, "cache"), real: filepath.Join(private, "cache")},
		{path: sticky, real: sticky},
		{path: filepath.Join(root, "to-private", "cache"), real: filepath.Join(private, "cache")},
		{path: open, why: errUnsafeCache},
		{path: filepath.Join(open, "cache"), why: errUnsafeCache}, // open/ could swap it
		{path: filepath.Join(root, "to-open", "cache"), why: errUnsafeCache},
		{path: filepath.Join(root, "loop-a")},
		{path: filepath.Join(root, "dotdot")},
		{path: filepath.Join(root, "missing")},
	} {
		real, err := privateDir(c.path, 0)
		switch {
		case c.real != "" && (err != nil || real != c.real):
			t.Errorf("%s: got %q, %v; want %q", c.path, real, err, c.real)
		case c.real == "" && err == nil:
			t.Errorf("%s: accepted as %q", c.path, real)
		case c.why != nil && !errors.Is(err, c.why):
			t.Errorf("%s: refused for %v, want %v", c.path, err, c.why)
		}
	}
}

// TestPrivateDirOtherOwner: a directory on the way that belongs to another user (root's herd
// with HOME left at a user's home by sudo) keeps the cache out of it.
func TestPrivateDirOtherOwner(t *testing.T) {
	herdtest.RequireRoot(t, "only root can give a directory to another user")
	home := filepath.Join(t.TempDir(), "home")
	if err := os.MkdirAll(filepath.Join(home, ".cache"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", home)
	if _, err := cacheDir("worker"); !errors.Is(err, errUnsafeCache) {
		t.Fatalf("cache under another user's home: %v", err)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	for _, content := range []string{"first", "second"} {
		if err := writeFileAtomic(dir, "f", []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "f")); err != nil || string(b) != content {
			t.Fatalf("got %q, %v; want %q", b, err, content)
		}
		if fi, err := os.Stat(filepath.Join(dir, "f")); err != nil {
			t.Fatal(err)
		} else if fi.Mode().Perm() != 0o640 {
			t.Fatalf("mode %v, want 0640", fi.Mode())
		}
	}
	if names, _ := os.ReadDir(dir); len(names) != 1 {
		t.Fatalf("left behind: %v", names)
	}
}
