package server

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// TestPidfileAndUmask: --pidfile holds the master's pid while it runs and is gone after
// SIGTERM; --umask 027 applies to the files the master creates (the access log, which
// logfile opens 0644, comes out 0640), and the pidfile is read by herd status --pidfile.
func TestPidfileAndUmask(t *testing.T) {
	env := isolatedRegistry(t)
	dir := t.TempDir()
	pidfile := filepath.Join(dir, "herd.pid")
	access := filepath.Join(dir, "access.log")
	h := herdtest.Start(t, herdtest.Options{Env: env, Args: []string{"app:app", "--workers", "1",
		"--pidfile", pidfile, "--umask", "027", "--access-log", access}})
	h.WaitReady(1, 20*time.Second)

	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatalf("pidfile: %v", err)
	}
	if want := strconv.Itoa(h.Cmd.Process.Pid) + "\n"; string(b) != want {
		t.Fatalf("pidfile holds %q, want %q", b, want)
	}
	if fi, err := os.Stat(pidfile); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("pidfile mode %v (err %v), want 0640 (0644 under umask 027)", fi.Mode().Perm(), err)
	}
	fi, err := os.Stat(access)
	if err != nil {
		t.Fatalf("access log: %v", err)
	}
	if got := fi.Mode().Perm(); got != 0o640 {
		t.Fatalf("access log mode %v, want 0640 (0644 under umask 027)", got)
	}
	if r := herdtest.Run(t, "", env, "status", "--pidfile", pidfile); r.Code != 0 {
		t.Fatalf("herd status --pidfile: exit %d, %q", r.Code, r.Stderr)
	}

	if err := h.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := h.Wait(15 * time.Second); code != 0 {
		t.Fatalf("master exited %d after SIGTERM, want 0", code)
	}
	if _, err := os.Stat(pidfile); !os.IsNotExist(err) {
		t.Fatalf("pidfile left behind after SIGTERM (err %v)", err)
	}
}

// TestUmaskRejectsNonOctal: a bad --umask stops serve with the option's name.
func TestUmaskRejectsNonOctal(t *testing.T) {
	r := herdtest.Run(t, "", isolatedRegistry(t), "serve", "app:app", "--umask", "9x")
	if r.Code == 0 || !containsAll(r.Stderr, "umask", "9x") {
		t.Fatalf("exit %d, stderr %q", r.Code, r.Stderr)
	}
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// TestUidGid: as root, --uid nobody --gid nogroup runs the workers as 65534:65534 (the
// master stays root) and they still serve, though they cannot read the runtime directory.
// Debian's python3: the pyenv one under /root is closed to nobody. The worker boundary holds:
// the runtime directory is 0700 and the master's, so another local user (nobody, the very
// user the workers run as) cannot connect to a worker's socket nor to the control socket,
// while root can.
func TestUidGid(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("HERD_REQUIRE_ALL") == "1" {
			t.Fatal("TestUidGid needs root (HERD_REQUIRE_ALL=1)")
		}
		t.Skip("--uid/--gid need root: run the tests as root (CI does)")
	}
	addr := herdtest.FreeAddr(t)
	h := herdtest.Start(t, herdtest.Options{Env: isolatedRegistry(t), Args: []string{"app:app", "--workers", "2",
		"--http", addr, "--uid", "nobody", "--gid", "nogroup", "--python", "/usr/bin/python3"}})
	pids := h.WaitReady(2, 20*time.Second)
	if code, _ := herdtest.Get(t, herdtest.Client(), "http://"+addr+"/"); code != 200 {
		t.Fatalf("GET / as nobody: status %d, want 200", code)
	}
	checkWorkerBoundary(t, h.RunDir())
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) == 5 && (f[0] == "Uid:" || f[0] == "Gid:") && f[1] != "65534" {
				t.Fatalf("worker %d: %q, want 65534", pid, line)
			}
			if f := strings.Fields(line); len(f) > 0 && f[0] == "Groups:" && len(f) > 1 && strings.Join(f[1:], " ") != "65534" {
				t.Fatalf("worker %d supplementary groups: %q, want none or 65534", pid, line)
			}
		}
	}
}

// TestUidUnknown: an unknown user or group is an error naming the key.
func TestUidUnknown(t *testing.T) {
	for _, args := range [][]string{{"--uid", "no-such-user-herd"}, {"--gid", "no-such-group-herd"}} {
		r := herdtest.Run(t, "", isolatedRegistry(t), append([]string{"serve", "app:app"}, args...)...)
		key := strings.TrimPrefix(args[0], "--")
		if r.Code == 0 || !containsAll(r.Stderr, key, args[1]) {
			t.Fatalf("%v: exit %d, stderr %q", args, r.Code, r.Stderr)
		}
	}
}

// TestFailedUpgradeGivesPidfileBack: a USR2 upgrade whose new master cannot load the app (a
// broken deploy) leaves the old master serving and --pidfile naming it again, although the
// new master wrote its own pid there and removed the file as it failed.
func TestFailedUpgradeGivesPidfileBack(t *testing.T) {
	dir := herdtest.CopyExample(t)
	pidfile := filepath.Join(t.TempDir(), "herd.pid")
	h := herdtest.Start(t, herdtest.Options{Dir: dir, Args: []string{"app:app", "--workers", "1", "--pidfile", pidfile}})
	h.WaitReady(1, 20*time.Second)
	writeFile(t, filepath.Join(dir, "app.py"), "def app(:\n")
	from := len(h.Events())
	h.Signal(syscall.SIGUSR2)
	if _, _, ok := h.WaitEvent(from, 60*time.Second, herdtest.IsMsg("the new master exited; this one keeps serving")); !ok {
		t.Fatal("the new master did not fail on the broken app")
	}
	want := strconv.Itoa(h.Cmd.Process.Pid)
	herdtest.EventuallyNil(t, 5*time.Second, "the pidfile naming the old master "+want+" after the failed upgrade", func() error {
		b, err := os.ReadFile(pidfile)
		if err == nil && strings.TrimSpace(string(b)) != want {
			err = fmt.Errorf("it holds %q", b)
		}
		return err
	})
	if code, _ := herdtest.Get(t, herdtest.Client(), h.URL+"/"); code != 200 {
		t.Fatalf("old master after the failed upgrade answered %d", code)
	}
}

// checkWorkerBoundary: dir is 0700 and owned by the master (this process's user), and each
// socket in it refuses a connection from uid/gid 65534 with EACCES but takes one from root.
func checkWorkerBoundary(t *testing.T, dir string) {
	t.Helper()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o700 || int(st.Uid) != os.Geteuid() {
		t.Fatalf("runtime dir %s: mode %v owner %d, want 0700 owned by %d", dir, fi.Mode().Perm(), st.Uid, os.Geteuid())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	sockets := 0
	for _, e := range entries {
		if e.Type()&os.ModeSocket == 0 {
			continue
		}
		sockets++
		path := filepath.Join(dir, e.Name())
		if got := dialAs(t, path, nil); got != "connected" {
			t.Fatalf("root cannot connect to %s: %s", path, got)
		}
		if got := dialAs(t, path, &syscall.Credential{Uid: 65534, Gid: 65534}); got != "EACCES" {
			t.Fatalf("uid 65534 connecting to %s: %s, want EACCES", path, got)
		}
	}
	if sockets < 3 { // two workers and the control socket
		t.Fatalf("%d sockets in %s (%v), want the workers' and the control socket", sockets, dir, entries)
	}
}

// dialAs connects to the Unix socket at path from a helper process running with cred (nil:
// as this process) and returns "connected" or the errno's name.
func dialAs(t *testing.T, path string, cred *syscall.Credential) string {
	t.Helper()
	cmd := exec.Command("/usr/bin/python3", "-c", `import errno, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
    print("connected")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))`, path)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dial helper: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}
