package sdnotify

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listen plays systemd's side: a datagram socket that receives notifications.
func listen(t *testing.T, addr string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func receive(t *testing.T, conn *net.UnixConn) map[string]string {
	t.Helper()
	buf := make([]byte, 4096)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimRight(string(buf[:n]), "\n"), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("not KEY=VALUE: %q", line)
		}
		out[k] = v
	}
	return out
}

func TestMessages(t *testing.T) {
	for _, addr := range []string{filepath.Join(t.TempDir(), "notify"), "@herd-sdnotify-test-" + strconv.Itoa(time.Now().Nanosecond())} {
		t.Run(addr, func(t *testing.T) {
			server := listen(t, addr)
			t.Setenv(EnvSocket, addr)
			n, err := FromEnv()
			if err != nil || n == nil {
				t.Fatalf("FromEnv: %v %v", n, err)
			}
			defer n.Close()
			if _, still := lookupEnv(); still {
				t.Error("NOTIFY_SOCKET still set: the workers would inherit it")
			}
			if err := n.Ready("2 workers"); err != nil {
				t.Fatal(err)
			}
			if got := receive(t, server); got["READY"] != "1" || got["STATUS"] != "2 workers" {
				t.Errorf("ready: %v", got)
			}
			before := monotonicUsec()
			if err := n.Reloading("reloading"); err != nil {
				t.Fatal(err)
			}
			got := receive(t, server)
			usec, _ := strconv.ParseUint(got["MONOTONIC_USEC"], 10, 64)
			if got["RELOADING"] != "1" || usec < before || usec > monotonicUsec() {
				t.Errorf("reloading: %v (monotonic now %d)", got, monotonicUsec())
			}
			if err := n.Stopping("bye"); err != nil {
				t.Fatal(err)
			}
			if got := receive(t, server); got["STOPPING"] != "1" || got["STATUS"] != "bye" {
				t.Errorf("stopping: %v", got)
			}
		})
	}
}

func lookupEnv() (string, bool) { return os.LookupEnv(EnvSocket) }

func TestNilNotifierIsNoop(t *testing.T) {
	t.Setenv(EnvSocket, "")
	n, err := FromEnv()
	if n != nil || err != nil {
		t.Fatalf("FromEnv without a socket: %v %v", n, err)
	}
	if err := n.Ready("x"); err != nil {
		t.Error(err)
	}
	if err := n.Close(); err != nil {
		t.Error(err)
	}
}

func TestUnsupportedAddress(t *testing.T) {
	if _, err := Dial("vsock:2:1234"); !errors.Is(err, ErrUnsupportedSocket) {
		t.Errorf("vsock address: %v", err)
	}
}
