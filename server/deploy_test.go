package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
	"github.com/herd-server/herd/internal/listener"
)

func testdataDir(t *testing.T) string {
	return filepath.Join(herdtest.RepoRoot(t), "server", "testdata")
}

// notifySocket plays systemd's end of NOTIFY_SOCKET: every datagram arrives on the channel
// as its KEY=VALUE assignments.
func notifySocket(t *testing.T) (string, <-chan map[string]string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	msgs := make(chan map[string]string, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			m := map[string]string{}
			for _, line := range strings.Split(strings.TrimRight(string(buf[:n]), "\n"), "\n") {
				k, v, _ := strings.Cut(line, "=")
				m[k] = v
			}
			msgs <- m
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return path, msgs
}

// waitNotify waits for a notification that sets key, and returns it.
func waitNotify(t *testing.T, msgs <-chan map[string]string, key string, timeout time.Duration) map[string]string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m := <-msgs:
			t.Logf("notify: %v", m)
			if _, ok := m[key]; ok {
				return m
			}
		case <-deadline:
			t.Fatalf("no %s= notification within %s", key, timeout)
		}
	}
}

// passedListener is a listening socket as systemd would create it from a socket unit.
func passedListener(t *testing.T) (*os.File, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // f keeps the socket listening
	t.Cleanup(func() { f.Close() })
	return f, addr
}

func TestSystemdNotifyAndSocketActivation(t *testing.T) {
	notifyPath, msgs := notifySocket(t)
	sock, addr := passedListener(t)

	// A client that connects before herd runs waits in the socket's backlog and is served:
	// this is why restarts under socket activation refuse no connection.
	early, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	if _, err := io.WriteString(early, "GET / HTTP/1.0\r\nHost: early\r\n\r\n"); err != nil {
		t.Fatal(err)
	}

	opts := herdtest.Activation([]*os.File{sock}, []string{"web"})
	opts.Listen = addr
	opts.Dir = testdataDir(t)
	opts.Args = []string{"deployapp:app", "--workers", "2"}
	opts.Env = append(opts.Env, "NOTIFY_SOCKET="+notifyPath)
	h := herdtest.Start(t, opts)
	sock.Close() // herd holds its own copy now, as a service holds systemd's

	ready := waitNotify(t, msgs, "READY", 30*time.Second)
	if ready["READY"] != "1" || !strings.Contains(ready["STATUS"], "ready") {
		t.Errorf("READY notification: %v", ready)
	}
	resp, err := http.ReadResponse(bufio.NewReader(early), nil)
	if err != nil {
		t.Fatalf("the connection made before herd started: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "hello\n" {
		t.Errorf("early connection: %d %q", resp.StatusCode, body)
	}
	if status, body := get(t, herdtest.Client(), h.URL+"/"); status != 200 || body != "hello\n" {
		t.Errorf("GET on the passed socket: %d %q", status, body)
	}
	if _, _, ok := h.WaitEvent(0, time.Second, herdtest.IsMsg("socket activation: serving the sockets systemd passed; --http, --https and --uwsgi-socket are not used")); !ok {
		t.Error("no log line about the passed socket")
	}

	// The workers must not inherit systemd's variables: they would take them for theirs.
	for _, pid := range herdtest.ChildPids(h.Cmd.Process.Pid) {
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			continue
		}
		for _, v := range []string{"NOTIFY_SOCKET=", "LISTEN_FDS=", "LISTEN_PID="} {
			if strings.Contains("\x00"+string(env), "\x00"+v) {
				t.Errorf("worker %d inherited %s", pid, v)
			}
		}
	}

	// STATUS= follows the workers: both are ready by now. Workers that boot fast are both
	// ready before READY=1 goes out, and then READY's own STATUS already says so.
	for m := ready; m["STATUS"] != "serving: 2 workers ready"; {
		m = waitNotify(t, msgs, "STATUS", 30*time.Second)
	}

	// SIGHUP reloads: RELOADING=1 with the monotonic clock (systemd 253's notify-reload),
	// then READY=1 once the new generation serves.
	if err := h.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	reloading := waitNotify(t, msgs, "RELOADING", 30*time.Second)
	if usec, err := strconv.ParseUint(reloading["MONOTONIC_USEC"], 10, 64); reloading["RELOADING"] != "1" || err != nil || usec == 0 {
		t.Errorf("RELOADING notification: %v", reloading)
	}
	if m := waitNotify(t, msgs, "READY", 30*time.Second); m["READY"] != "1" || !strings.Contains(m["STATUS"], "serving generation 2") {
		t.Errorf("READY after the reload: %v", m)
	}
	if status, body := get(t, herdtest.Client(), h.URL+"/"); status != 200 || body != "hello\n" {
		t.Errorf("GET after the reload: %d %q", status, body)
	}

	// USR2 upgrade: the old master names the new one as systemd's main process as it
	// retires (only the main process may, under NotifyAccess=main), and says no STOPPING=1:
	// the service stays up, served by the new master on the same passed socket.
	newPid := h.Upgrade(60 * time.Second)
	for {
		m := waitNotify(t, msgs, "STATUS", 60*time.Second)
		if _, ok := m["STOPPING"]; ok {
			t.Fatalf("STOPPING=1 during an upgrade: systemd would stop the service: %v", m)
		}
		if pid, ok := m["MAINPID"]; ok {
			if pid != strconv.Itoa(newPid) || m["READY"] != "1" {
				t.Errorf("hand-over notification %v, want MAINPID=%d and READY=1", m, newPid)
			}
			break
		}
	}
	if code := h.Wait(60 * time.Second); code != 0 {
		t.Errorf("old master exited %d after the upgrade", code)
	}
	if status, body := get(t, herdtest.Client(), h.URL+"/"); status != 200 || body != "hello\n" {
		t.Errorf("GET after the upgrade: %d %q", status, body)
	}

	// The new master got NOTIFY_SOCKET: its own stop reaches systemd.
	if err := syscall.Kill(newPid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if m := waitNotify(t, msgs, "STOPPING", 30*time.Second); m["STOPPING"] != "1" {
		t.Errorf("STOPPING notification: %v", m)
	}
	waitGone(t, newPid)
}

func TestShutdownDelayKeepsServingThenRefuses(t *testing.T) {
	const delay = 3 * time.Second
	h := herdtest.Start(t, herdtest.Options{Dir: testdataDir(t), Admin: true, Args: []string{"deployapp:app", "--workers", "1", "--shutdown-delay", delay.String()}})
	h.WaitReady(1, 30*time.Second)
	if err := h.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_, next, ok := h.WaitEvent(0, 10*time.Second, herdtest.IsMsg("draining: still accepting connections until the delay ends"))
	if !ok {
		t.Fatal("no drain log line after SIGTERM")
	}
	start := time.Now()
	// Readiness fails at once, so Kubernetes takes the pod out of the Service; a new
	// connection during the delay is still served, since endpoints take a while to update.
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	if status, body := get(t, c, h.AdminURL+"/readyz"); status != 503 {
		t.Errorf("/readyz during the delay: %d %q, want 503", status, body)
	}
	if status, body := get(t, c, h.URL+"/"); status != 200 || body != "hello\n" {
		t.Fatalf("during the delay: %d %q", status, body)
	}
	if served := time.Since(start); served > delay/2 {
		t.Logf("the request took %s of the %s delay; the check above still proves it was served in the delay", served, delay)
	}
	if _, _, ok := h.WaitEvent(next, 2*delay, herdtest.IsMsg("closing the listeners; finishing requests in flight")); !ok {
		t.Fatal("the delay never ended")
	}
	if code := h.Wait(30 * time.Second); code != 0 {
		t.Errorf("exit code %d", code)
	}
	if waited := time.Since(start); waited < delay/2 {
		t.Errorf("stopped %s after the drain began, before the %s delay", waited, delay)
	}
	if _, err := net.Dial("tcp", h.Addr); err == nil {
		t.Error("still accepting after the stop")
	}
}

func TestProxyProtocol(t *testing.T) {
	proxyAddr := herdtest.FreeAddr(t)
	h := herdtest.Start(t, herdtest.Options{Dir: testdataDir(t), Args: []string{
		"deployapp:app", "--workers", "1", "--http", proxyAddr, "--proxy-protocol", proxyAddr,
	}})
	h.WaitReady(1, 30*time.Second)

	raw := func(t *testing.T, addr string, prefix []byte) (string, error) {
		t.Helper()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		req := append(append([]byte{}, prefix...), "GET /remote HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"...)
		if _, err := conn.Write(req); err != nil {
			return "", err
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return fmt.Sprintf("%d %s", resp.StatusCode, body), err
	}
	hdr := listener.Header{Source: tcpAddr(t, "203.0.113.7:4242"), Dest: tcpAddr(t, proxyAddr)}
	hdr6 := listener.Header{Source: tcpAddr(t, "[2001:db8::7]:4343"), Dest: tcpAddr(t, "[2001:db8::1]:80")}
	for _, tc := range []struct {
		name, want string
		header     []byte
	}{
		{"v1", "200 203.0.113.7:4242", listener.AppendV1(nil, hdr)},
		{"v2", "200 203.0.113.7:4242", listener.AppendV2(nil, hdr)},
		{"v1 IPv6", "200 2001:db8::7:4343", listener.AppendV1(nil, hdr6)},
		{"v2 IPv6", "200 2001:db8::7:4343", listener.AppendV2(nil, hdr6)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := raw(t, proxyAddr, tc.header)
			if err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	t.Run("v2 LOCAL keeps the real peer", func(t *testing.T) {
		got, err := raw(t, proxyAddr, listener.AppendV2(nil, listener.Header{}))
		if err != nil || !strings.HasPrefix(got, "200 127.0.0.1:") {
			t.Errorf("got %q, %v", got, err)
		}
	})
	t.Run("without a header the connection is refused", func(t *testing.T) {
		got, err := raw(t, proxyAddr, nil)
		if err == nil {
			t.Errorf("served without a PROXY header: %q", got)
		}
		if _, _, ok := h.WaitEvent(0, 5*time.Second, herdtest.IsMsg("connection refused: no valid PROXY header")); !ok {
			t.Error("the refusal was not logged")
		}
	})
	t.Run("a listener without the flag answers a header with 400", func(t *testing.T) {
		for _, header := range [][]byte{listener.AppendV1(nil, hdr), listener.AppendV2(nil, hdr)} {
			got, err := raw(t, h.Addr, header)
			if err != nil || !strings.HasPrefix(got, "400 ") {
				t.Errorf("got %q, %v; want 400", got, err)
			}
		}
		if got, err := raw(t, h.Addr, nil); err != nil || !strings.HasPrefix(got, "200 127.0.0.1:") {
			t.Errorf("plain request: %q, %v", got, err)
		}
	})
}

func tcpAddr(t *testing.T, s string) *net.TCPAddr {
	t.Helper()
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
