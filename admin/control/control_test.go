package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func newServer(t *testing.T) *Server {
	t.Helper()
	s, err := Listen(filepath.Join(t.TempDir(), "ctl.sock"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	s.Handle("echo", func(_ context.Context, args json.RawMessage) (any, error) {
		var v map[string]any
		if err := json.Unmarshal(args, &v); err != nil {
			return nil, err
		}
		return v, nil
	})
	s.Handle("fail", func(context.Context, json.RawMessage) (any, error) { return nil, errors.New("it went wrong") })
	return s
}

func TestSocketIsPrivate(t *testing.T) {
	s := newServer(t)
	fi, err := os.Stat(s.Path())
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %s: %v, mode %v", s.Path(), err, fi.Mode())
	}
	entries, _ := os.ReadDir(filepath.Dir(s.Path()))
	if len(entries) != 1 {
		t.Fatalf("the directory holds %d files, want only the socket (no temporary name left)", len(entries))
	}
}

func TestCall(t *testing.T) {
	s := newServer(t)
	var got map[string]any
	if err := Call(s.Path(), "echo", map[string]int{"n": 7}, &got, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got["n"] != float64(7) {
		t.Fatalf("echo: %v", got)
	}
	err := Call(s.Path(), "fail", nil, nil, 5*time.Second)
	if err == nil || err.Error() != "fail: it went wrong" {
		t.Fatalf("fail: %v", err)
	}
	err = Call(s.Path(), "stauts", nil, nil, 5*time.Second)
	if err == nil || err.Error() != `stauts: unknown command "stauts" (known: echo, fail)` {
		t.Fatalf("unknown command: %v", err)
	}
}

// TestLineProtocol speaks the protocol by hand: several requests on one connection, each
// answered on its own line, and a bad line answered without closing the connection.
func TestLineProtocol(t *testing.T) {
	s := newServer(t)
	c, err := net.Dial("unix", s.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	for _, x := range []struct{ req, resp string }{
		{`{"cmd":"echo","args":{"a":1}}`, `{"ok":true,"result":{"a":1}}`},
		{`not json`, `{"ok":false,"error":"bad request: invalid character 'o' in literal null (expecting 'u')"}`},
		{`{"cmd":"fail"}`, `{"ok":false,"error":"it went wrong"}`},
	} {
		if _, err := c.Write([]byte(x.req + "\n")); err != nil {
			t.Fatal(err)
		}
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(line) != x.resp {
			t.Fatalf("%s -> %s, want %s", x.req, line, x.resp)
		}
	}
}

func TestCloseRemovesSocketAndEndsConnections(t *testing.T) {
	s := newServer(t)
	c, err := net.Dial("unix", s.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Path()); !os.IsNotExist(err) {
		t.Fatalf("socket file still there after Close: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("an open connection survived Close")
	}
}

func TestStaleAndLiveSockets(t *testing.T) {
	s := newServer(t)
	if _, err := Listen(s.Path(), zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "in use by another herd master") {
		t.Fatalf("second Listen on a live socket: %v", err)
	}
	// A socket file nobody listens on (a master that was SIGKILLed) is replaced.
	stale := filepath.Join(t.TempDir(), "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	s2, err := Listen(stale, zerolog.Nop())
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	s2.Close()
	notSocket := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notSocket, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(notSocket, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Fatalf("Listen over a regular file: %v", err)
	}
}

func TestRegistryFind(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	if _, err := Find(Target{}); err == nil || !strings.Contains(err.Error(), "no running herd master found") {
		t.Fatalf("empty registry: %v", err)
	}
	me := Entry{Pid: os.Getpid(), Socket: "/run/a.sock", App: "a:app", Dir: "/srv/a"}
	if _, err := Register(me); err != nil {
		t.Fatal(err)
	}
	// An entry of a process that is gone is ignored and removed.
	dead := Entry{Pid: 1 << 22, Socket: "/run/dead.sock"}
	deadFile, err := Register(dead)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Find(Target{}); err != nil || got != "/run/a.sock" {
		t.Fatalf("Find: %q, %v", got, err)
	}
	if _, err := os.Stat(deadFile); !os.IsNotExist(err) {
		t.Fatalf("dead master's entry kept: %v", err)
	}
	if _, err := Find(Target{Pid: 12345678}); err == nil || !strings.Contains(err.Error(), "no running herd master with pid 12345678") {
		t.Fatalf("unknown pid: %v", err)
	}
	pidfile := filepath.Join(t.TempDir(), "pid")
	_ = os.WriteFile(pidfile, []byte("garbage\n"), 0o644)
	if _, err := Find(Target{Pidfile: pidfile}); err == nil || !strings.Contains(err.Error(), `does not hold a pid: "garbage"`) {
		t.Fatalf("bad pidfile: %v", err)
	}
	// Two masters: the one started in the working directory is meant.
	other := Entry{Pid: os.Getppid(), Socket: "/run/b.sock", App: "b:app", Dir: "/nowhere"}
	if _, err := Register(other); err != nil {
		t.Fatal(err)
	}
	if _, err := Find(Target{}); err == nil || !strings.Contains(err.Error(), "2 herd masters are running; choose one with --pid") {
		t.Fatalf("two masters elsewhere: %v", err)
	}
	cwd, _ := os.Getwd()
	other.Dir = cwd
	if _, err := Register(other); err != nil {
		t.Fatal(err)
	}
	if got, err := Find(Target{}); err != nil || got != "/run/b.sock" {
		t.Fatalf("Find with one master here: %q, %v", got, err)
	}
}
