package server

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// nsPid is the pid of a host process inside its innermost PID namespace (the last NSpid).
func nsPid(hostPid int) (int, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", hostPid))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(rest)
			n, err := strconv.Atoi(f[len(f)-1])
			return n, err == nil
		}
	}
	return 0, false
}

func onlyChild(t *testing.T, pid int, what string) int {
	t.Helper()
	var kids []int
	herdtest.EventuallyNil(t, 10*time.Second, fmt.Sprintf("%s: one child of process %d", what, pid), func() error {
		if kids = herdtest.ChildPids(pid); len(kids) != 1 {
			return fmt.Errorf("children %v", kids)
		}
		return nil
	})
	return kids[0]
}

// TestPID1ReapsOrphansAndForwardsTerm runs herd as the first process of a new PID namespace,
// as in a container: orphans the app leaves behind are re-parented to it and must be reaped,
// and the TERM a container runtime sends to PID 1 must stop herd gracefully.
func TestPID1ReapsOrphansAndForwardsTerm(t *testing.T) {
	herdtest.RequireRoot(t, "unshare --pid creates a PID namespace")
	unshare := herdtest.RequireTool(t, "unshare", "util-linux")
	h := herdtest.Start(t, herdtest.Options{
		// --mount-proc: a container's /proc shows its own PID namespace, which herd as PID 1
		// reads to find the master a USR2 upgrade starts.
		Wrap: []string{unshare, "--pid", "--fork", "--kill-child", "--mount-proc"},
		Dir:  testdataDir(t),
		Args: []string{"deployapp:app", "--workers", "1"},
	})
	h.WaitReady(1, 30*time.Second)

	// unshare (host) -> herd as PID 1 (reaps, forwards) -> herd master -> worker.
	init := onlyChild(t, h.Cmd.Process.Pid, "unshare")
	if n, _ := nsPid(init); n != 1 {
		t.Fatalf("herd is pid %d in its namespace, want 1", n)
	}
	master := onlyChild(t, init, "herd as PID 1")

	status, body := get(t, herdtest.Client(), h.URL+"/orphans?n=3&s=1")
	if status != 200 {
		t.Fatalf("/orphans: %d %q", status, body)
	}
	orphans := map[int]int{} // namespace pid -> host pid
	for _, f := range strings.Fields(body) {
		n, _ := strconv.Atoi(f)
		orphans[n] = 0
	}
	// Each orphan is now PID 1's child: the app's middle process exited before answering.
	for _, kid := range herdtest.ChildPids(init) {
		if n, ok := nsPid(kid); ok {
			if _, mine := orphans[n]; mine {
				orphans[n] = kid
			}
		}
	}
	for n, host := range orphans {
		if host == 0 {
			t.Fatalf("orphan %d (namespace pid) is not a child of herd as PID 1; children: %v", n, herdtest.ChildPids(init))
		}
	}
	// They exit after a second; reaped, they leave /proc entirely (a zombie would stay).
	herdtest.EventuallyNil(t, 15*time.Second, "every orphan reaped", func() error {
		for n, host := range orphans {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", host)); !os.IsNotExist(err) {
				stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", host))
				return fmt.Errorf("orphan %d (host pid %d): %s", n, host, stat)
			}
		}
		return nil
	})

	// USR2 sent to PID 1 reaches the master, which starts a new one and retires; PID 1 then
	// follows the new master (orphaned to it) instead of ending the container.
	from := len(h.Events())
	if err := syscall.Kill(init, syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := h.WaitEvent(from, 60*time.Second, herdtest.IsMsg("upgrade: serving; the old master drains and exits")); !ok {
		t.Fatal("no upgrade after USR2 to PID 1")
	}
	waitGone(t, master)
	newMaster := onlyChild(t, init, "herd as PID 1 after the upgrade")
	if newMaster == master {
		t.Fatal("the old master is still PID 1's child")
	}
	if status, body := get(t, herdtest.Client(), h.URL+"/"); status != 200 || body != "hello\n" {
		t.Errorf("GET after the upgrade: %d %q", status, body)
	}

	// The TERM goes to PID 1, which passes it on: the master drains and all exit 0.
	from = len(h.Events())
	if err := syscall.Kill(init, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := h.WaitEvent(from, 10*time.Second, herdtest.IsMsg("graceful stop: finishing requests in flight")); !ok {
		t.Fatal("the master never heard the TERM sent to PID 1")
	}
	if code := h.Wait(30 * time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if herdtest.Alive(newMaster) {
		t.Errorf("master %d still alive", newMaster)
	}
}
