package server

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
	"github.com/rs/zerolog"
)

// TestStaleRunDirRemoved: a SIGKILLed master cannot remove its runtime directory (the worker
// code, sockets); the next master of the same user removes it, and leaves alone the
// directory of a master that still runs and anything that is not a master's.
func TestStaleRunDirRemoved(t *testing.T) {
	tmp := t.TempDir()
	env := []string{"TMPDIR=" + tmp}
	other := filepath.Join(tmp, "herd-not-a-master")
	if err := os.Mkdir(other, 0o700); err != nil {
		t.Fatal(err)
	}
	killed := herdtest.Start(t, herdtest.Options{Env: env, Args: []string{"app:app", "--workers", "1"}})
	killed.WaitReady(1, 30*time.Second)
	stale := killed.RunDir()
	if filepath.Dir(stale) != tmp {
		t.Fatalf("runtime directory %s is not under TMPDIR %s", stale, tmp)
	}
	killed.Signal(syscall.SIGKILL)
	killed.Wait(10 * time.Second)
	if _, err := os.Stat(stale); err != nil {
		t.Fatalf("the killed master's directory is already gone (%v): the test proves nothing", err)
	}

	live := herdtest.Start(t, herdtest.Options{Env: env, Args: []string{"app:app", "--workers", "1"}})
	live.WaitReady(1, 30*time.Second)
	next := herdtest.Start(t, herdtest.Options{Env: env, Args: []string{"app:app", "--workers", "1"}})
	next.WaitReady(1, 30*time.Second)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("the dead master's runtime directory %s is still there (%v)", stale, err)
	}
	if _, _, ok := live.WaitEvent(0, 0, func(e herdtest.Event) bool { return e.Str("runtime_dir") == stale }); !ok {
		t.Error("the master that removed it did not say so")
	}
	for _, keep := range []string{live.RunDir(), next.RunDir(), other} {
		if _, err := os.Stat(keep); err != nil {
			t.Errorf("%s was removed: %v", keep, err)
		}
	}
}

// TestDevWarnsOffLoopback: herd dev on 0.0.0.0 says that its error page shows the source to
// anyone; on 127.0.0.1 it says nothing of the kind.
func TestDevWarnsOffLoopback(t *testing.T) {
	for _, host := range []string{"0.0.0.0", "127.0.0.1"} {
		addr := herdtest.FreeAddr(t)
		_, port, _ := net.SplitHostPort(addr)
		h := herdtest.Start(t, herdtest.Options{Command: "dev", Listen: net.JoinHostPort(host, port),
			Args: []string{"app:app", "--http", net.JoinHostPort(host, port)}})
		h.WaitReady(1, 30*time.Second)
		warned := h.Count(func(e herdtest.Event) bool {
			return e.Str("level") == "warn" && strings.Contains(e.Msg(), "non-loopback")
		})
		if want := host == "0.0.0.0"; (warned > 0) != want {
			t.Errorf("herd dev on %s: %d warnings about a non-loopback address, want any: %v", host, warned, want)
		}
	}
}

// TestStaleRunDirOfAnotherPIDNamespace: a master under unshare (herd as PID 1) or in a
// container sharing TMPDIR counts its pid in its own PID namespace, which from here names
// nobody or someone else: its directory is left alone, or a live master's worker sockets
// would go (TestPID1ReapsOrphansAndForwardsTerm's new master lost its own that way whenever
// another herd started meanwhile). Directories of this namespace are judged by pid and
// start time as before; those of older herds, which name no namespace, too when this is
// the host's. The master file keeps the form older herds read.
func TestStaleRunDirOfAnotherPIDNamespace(t *testing.T) {
	tmp := t.TempDir()
	const gone = "999999999 12345\n" // a pid past any pid_max
	for name, ns := range map[string]string{"herd-other-namespace": "pid:[1]", "herd-this-namespace": pidNamespace(), "herd-older": ""} {
		dir := filepath.Join(tmp, name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, masterFile), []byte(gone), 0o600); err != nil {
			t.Fatal(err)
		}
		if ns != "" {
			if err := os.WriteFile(filepath.Join(dir, nsFile), []byte(ns+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	removeStaleRunDirs(tmp, zerolog.Nop())
	onHost := pidNamespace() == initPIDNamespace
	for name, keep := range map[string]bool{"herd-other-namespace": true, "herd-this-namespace": false, "herd-older": !onHost} {
		_, err := os.Stat(filepath.Join(tmp, name))
		if kept := err == nil; kept != keep {
			t.Errorf("%s: kept %v, want %v", name, kept, keep)
		}
	}

	// What this master writes: "pid start" as older herds read it, the namespace apart.
	t.Setenv("TMPDIR", tmp)
	dir, err := makeRunDir(zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	b, err := os.ReadFile(filepath.Join(dir, masterFile))
	if fields := strings.Fields(string(b)); err != nil || len(fields) != 2 || fields[0] != strconv.Itoa(os.Getpid()) {
		t.Errorf("master file %q, %v: want \"pid start\"", b, err)
	}
}
