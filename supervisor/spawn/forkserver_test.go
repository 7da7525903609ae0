package spawn

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/herd-server/herd/internal/herdtest"
)

// forkServerFor is a ForkServer of the app in dir (a real Python, herd's worker code).
func forkServerFor(t *testing.T, dir, app string) *ForkServer {
	t.Helper()
	python := realPython(t)
	files, err := InstallWorker(t.TempDir(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	f := &ForkServer{Exec: &Exec{Python: python, WorkerScript: files.Script, Args: []string{"--app", app, "--chdir", dir}, Dir: dir},
		Log: zerolog.Nop()}
	t.Cleanup(f.Close)
	return f
}

// workerSpec makes the sockets of one worker: the spec to spawn it with, and the master's
// end of its control channel.
func workerSpec(t *testing.T, id, gen int) (Spec, net.Conn) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(t.TempDir(), "w.sock"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	listen, err := ln.File()
	_ = ln.Close()
	if err != nil {
		t.Fatal(err)
	}
	master, child, err := channelPair("control")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = listen.Close(); _ = child.Close(); _ = master.Close() })
	return Spec{ID: id, Generation: gen, Listen: listen, Control: child}, master
}

func readLine(t *testing.T, c net.Conn) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("control channel: %v (read %q)", err, line)
	}
	return line
}

// TestForkServerWorkerLife: a worker is forked once its fork server is ready (pid 0 until
// then), says ready on its own control channel, and its exit (the master closes that
// channel) is reported with its status.
func TestForkServerWorkerLife(t *testing.T) {
	f := forkServerFor(t, filepath.Join(herdtest.RepoRoot(t), "scripts", "testapps"), "hello:app")
	spec, control := workerSpec(t, 1, 1)
	p, err := f.Spawn(spec)
	if err != nil {
		t.Fatal(err)
	}
	if line := readLine(t, control); !strings.Contains(line, `"event": "ready"`) {
		t.Fatalf("first message %q", line)
	}
	if p.Pid() <= 0 {
		t.Fatalf("pid %d once ready", p.Pid())
	}
	st := f.Status()
	if len(st.Servers) != 1 || st.Servers[0].State != "ready" || st.Servers[0].Children != 1 || st.Servers[0].Forks != 1 {
		t.Fatalf("status %+v", st)
	}
	_ = control.Close()
	if got := p.Wait(); got.Code != 0 || got.Signal != 0 || got.Err != nil {
		t.Fatalf("exit %s, want exit 0", got)
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("signal after the exit: %v", err)
	}
}

// TestForkServerBootError: an app that does not import: every worker asked for hears the
// fork server's boot error on its control channel, as if it had imported the app itself,
// and exits 4.
func TestForkServerBootError(t *testing.T) {
	f := forkServerFor(t, filepath.Join(herdtest.RepoRoot(t), "scripts", "testapps"), "broken:app")
	var procs []Process
	var controls []net.Conn
	for id := 1; id <= 2; id++ {
		spec, control := workerSpec(t, id, 1)
		p, err := f.Spawn(spec)
		if err != nil {
			t.Fatal(err)
		}
		procs, controls = append(procs, p), append(controls, control)
	}
	for i, p := range procs {
		line := readLine(t, controls[i])
		if !strings.Contains(line, `"boot_error"`) || !strings.Contains(line, "broken on purpose") || !strings.Contains(line, "Traceback") {
			t.Fatalf("worker %d heard %q", i+1, line)
		}
		if st := p.Wait(); st.Code != ExitAppImport {
			t.Fatalf("worker %d: %s, want exit 4", i+1, st)
		}
	}
}

// TestForkServerKilledWhileImporting: a worker killed (its boot timeout) while its fork
// server still imports is given up at once, and the fork server nobody waits for any more
// is killed.
func TestForkServerKilledWhileImporting(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "slowapp.py"), []byte("import time\ntime.sleep(60)\napp = None\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := forkServerFor(t, dir, "slowapp:app")
	spec, _ := workerSpec(t, 1, 1)
	p, err := f.Spawn(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if st := p.Wait(); st.Signal != syscall.SIGKILL {
		t.Fatalf("exit %s, want killed by SIGKILL", st)
	}
	herdtest.Eventually(t, 10*time.Second, "the importing fork server gone", func() bool { return len(f.Status().Servers) == 0 })
}
