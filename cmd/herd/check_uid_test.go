package main

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// uidApp refuses to import unless it runs as nobody: herd check must import it as --uid.
const uidApp = `import os
if (os.getuid(), os.getgid()) != (65534, 65534):
    raise RuntimeError("imported as uid %d gid %d, not as nobody" % (os.getuid(), os.getgid()))

def app(environ, start_response):
    start_response("200 OK", [])
    return [b""]
`

// TestCheckUidGid: herd check validates --uid and --gid as serve does, and as root imports
// the app as that user; as another user it says it cannot switch, after checking the names.
func TestCheckUidGid(t *testing.T) {
	herdtest.RequireRoot(t, "--uid/--gid switch users only as root")
	dir := herdtest.OpenTempDir(t)
	if err := os.WriteFile(filepath.Join(dir, "uidapp.py"), []byte(uidApp), 0o644); err != nil {
		t.Fatal(err)
	}
	python := "HERD_PYTHON=/usr/bin/python3" // the pyenv one under /root is closed to nobody
	t.Run("imports as the user", func(t *testing.T) {
		r := herdtest.Run(t, dir, []string{python}, "check", "uidapp:app", "--uid", "nobody", "--gid", "nogroup")
		if r.Code != 0 || !strings.Contains(r.Stdout, "ok: uidapp:app imported by /usr/bin/python3 as uid 65534 gid 65534 in") {
			t.Fatalf("exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
		}
		// Without --uid the same app fails to import: the check above did switch.
		r = herdtest.Run(t, dir, []string{python}, "check", "uidapp:app")
		if r.Code != exitAppBoot || !strings.Contains(r.Stderr, "imported as uid 0 gid 0, not as nobody") {
			t.Fatalf("as root: exit %d\n%s", r.Code, r.Stderr)
		}
	})
	t.Run("unknown names", func(t *testing.T) {
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"--uid", "no-such-user-herd"}, `uid: no user "no-such-user-herd"`},
			{[]string{"--gid", "no-such-group-herd"}, `gid: no group "no-such-group-herd"`},
		} {
			r := herdtest.Run(t, dir, []string{python}, append([]string{"check", "uidapp:app"}, c.args...)...)
			if r.Code != 1 || !strings.Contains(r.Stderr, c.want) || strings.Contains(r.Stdout, "imported") {
				t.Fatalf("%v: exit %d, stderr %q", c.args, r.Code, r.Stderr)
			}
		}
	})
	t.Run("not root", func(t *testing.T) {
		// herd check as nobody: a copy of the binary nobody may run.
		bin := filepath.Join(herdtest.OpenTempDir(t), "herd")
		copyFile(t, herdtest.Binary(t), bin, 0o755)
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"--uid", "nobody"}, "uid: only root may run the workers as another user or group (herd runs as uid 65534)"},
			{[]string{"--gid", "nogroup"}, "gid: only root may run the workers as another user or group (herd runs as uid 65534)"},
			{[]string{"--uid", "no-such-user-herd"}, `uid: no user "no-such-user-herd"`},
		} {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			cmd := exec.CommandContext(ctx, "setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", bin, "check", "uidapp:app"}, c.args...)...)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), python)
			out, err := cmd.CombinedOutput()
			cancel()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), c.want) {
				t.Fatalf("%v as nobody: %v\n%s", c.args, err, out)
			}
		}
	})
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
