package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/herd-server/herd/internal/herdtest"
	"github.com/herd-server/herd/protocol"
)

// TestSendTimeoutFreesWorkers: issue 21's first attack, over each front end. Clients ask for
// a streamed answer (no Content-Length: the worker writes it as the client takes it) and
// take none of it: two HTTP/1.1 clients with a 4 KiB receive buffer, one HTTP/2 connection
// with SETTINGS_INITIAL_WINDOW_SIZE=0 and two streams, two uwsgi clients. Each pair holds
// both workers; with --send-timeout 3s herd gives them up, so a normal client's /hello,
// sent without pause meanwhile, is answered within 5 s throughout (without the bound, it
// waited as long as the attackers stayed). Then two non-readers of a spooled 24 MiB
// answer: the worker is free at once, and the spool files are let go after the timeout.
func TestSendTimeoutFreesWorkers(t *testing.T) {
	t.Parallel() // it waits on timeouts, mostly
	uwsgiPath := filepath.Join(t.TempDir(), "u.sock")
	h := herdtest.Start(t, herdtest.Options{Dir: testAppsDir(t), Env: []string{"HERD_HOSTILE_COUNT=/dev/null"},
		Args: []string{"hostileapp:app", "--workers", "2", "--access-log", "off", "--send-timeout", "3s", "--h2c",
			"--uwsgi-socket", "unix:" + uwsgiPath}})
	h.WaitReady(2, 60*time.Second)
	stream := "GET /stream HTTP/1.1\r\nHost: a\r\n\r\n"

	t.Run("HTTP/1.1", func(t *testing.T) {
		for range 2 {
			c := dialStalled(t, "tcp", h.Addr)
			if _, err := io.WriteString(c, stream); err != nil {
				t.Fatal(err)
			}
			defer expectCut(t, c)
			readStatus(t, c)
		}
		helloThroughout(t, h, 5*time.Second)
	})
	t.Run("HTTP/2 window 0", func(t *testing.T) {
		c := dialH2C(t, h.Addr, false, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
		for _, id := range []uint32{1, 3} {
			c.request(id, "GET", "a", "/stream", true)
			if st := c.answered(id, 10*time.Second); st != 200 {
				t.Fatalf("stream %d: %d", id, st)
			}
		}
		helloThroughout(t, h, 5*time.Second)
		for _, id := range []uint32{1, 3} {
			c.waitStream(id, 5*time.Second, "stream reset", func(s h2Stream) bool { return s.reset })
		}
	})
	t.Run("uwsgi", func(t *testing.T) {
		packet := uwsgiPacket(t, 0, []protocol.Var{{Key: "REQUEST_METHOD", Value: "GET"}, {Key: "PATH_INFO", Value: "/stream"}}, "")
		for range 2 {
			c := dialStalled(t, "unix", uwsgiPath)
			if _, err := c.Write(packet); err != nil {
				t.Fatal(err)
			}
			defer expectCut(t, c)
			readStatus(t, c)
		}
		helloThroughout(t, h, 5*time.Second)
	})
	t.Run("spool", func(t *testing.T) {
		for range 2 {
			c := dialStalled(t, "tcp", h.Addr)
			fmt.Fprintf(c, "GET /big?n=%d HTTP/1.1\r\nHost: a\r\n\r\n", 24<<20)
			defer expectCut(t, c)
			readStatus(t, c)
		}
		pid := h.Cmd.Process.Pid
		if n := spoolFiles(pid); n == 0 {
			t.Fatal("no spool file open while two clients have not read their answers")
		}
		helloThroughout(t, h, time.Second) // the workers were free all along
		herdtest.Eventually(t, 8*time.Second, "the spool files let go", func() bool { return spoolFiles(pid) == 0 })
	})
}

// dialStalled connects with a 4 KiB receive buffer, set before the handshake so that the
// window the server sees is small from the start.
func dialStalled(t *testing.T, network, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	c, err := d.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readStatus reads the status line of an answer, and no more of it.
func readStatus(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReaderSize(c, 16).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
		t.Fatalf("status line %q: %v", line, err)
	}
	_ = c.SetReadDeadline(time.Time{})
}

// expectCut checks that herd closed c: what it holds is read to its end, which comes soon.
func expectCut(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil && !isConnReset(err) {
		t.Errorf("the connection of a client that read nothing is still open: %v", err)
	}
}

// helloThroughout sends /hello, one after another and at most one each 20 ms, for the send
// timeout and more (4 s), and fails the test when one is not answered 200 within limit.
func helloThroughout(t *testing.T, h *herdtest.Instance, limit time.Duration) {
	t.Helper()
	client := herdtest.Client()
	client.Timeout = 2 * limit
	var worst time.Duration
	n := 0
	// The pace samples the 4 s the attack must last through; back to back, the requests
	// would only load the machine other tests share.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); n++ {
		<-tick.C
		start := time.Now()
		resp, err := client.Get(h.URL + "/hello")
		took := time.Since(start)
		worst = max(worst, took)
		if err != nil {
			t.Fatalf("/hello under attack: %v after %v", err, took)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || took > limit {
			t.Fatalf("/hello under attack: %d after %v (limit %v)", resp.StatusCode, took, limit)
		}
	}
	t.Logf("%d /hello under attack, the slowest in %v", n, worst.Round(time.Millisecond))
}

// spoolFiles counts the master's descriptors open on response spool files.
func spoolFiles(pid int) int {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, _ := os.ReadDir(dir)
	n := 0
	for _, e := range entries {
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.Contains(target, "/response-") {
			n++
		}
	}
	return n
}
