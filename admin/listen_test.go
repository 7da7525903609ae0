package admin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestListenRefusesNonLoopbackUnlessAllowed(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:9180", "example.com:9180"} {
		ln, err := Listen(addr, false)
		if err == nil {
			ln.Close()
			t.Errorf("Listen(%q) without allow-remote succeeded", addr)
		} else if !strings.Contains(err.Error(), "--admin-allow-remote") {
			t.Errorf("Listen(%q): error %q does not name the way out", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "localhost:0", "127.0.0.2:0"} {
		ln, err := Listen(addr, false)
		if err != nil {
			t.Errorf("Listen(%q): %v", addr, err)
			continue
		}
		ln.Close()
	}
	ln, err := Listen("0.0.0.0:0", true)
	if err != nil {
		t.Fatalf("Listen with allow-remote: %v", err)
	}
	ln.Close()
}

func TestListenUnixSocketIsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.sock")
	for range 2 { // the second time over the first one's stale socket
		ln, err := Listen("unix:"+path, false)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("admin socket mode %o, want 600", fi.Mode().Perm())
		}
		if _, err := Listen("unix:"+path, false); err == nil {
			t.Fatal("a second listener took over a socket in use")
		}
		ln.Close()
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("closing the listener removed the socket file: %v", err)
		}
	}
}
