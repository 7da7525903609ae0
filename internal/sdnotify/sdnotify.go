// Package sdnotify tells systemd (or anything that plays it) how the service is doing, over
// the datagram socket named by NOTIFY_SOCKET: READY=1, RELOADING=1, STOPPING=1, STATUS=...
// It is a hand-written client of the sd_notify(3) protocol, not a binding of libsystemd:
// one datagram per message, newline-separated KEY=VALUE assignments.
//
// It never decides when to send; the serve command does. Every method of a nil *Notifier is
// a no-op, so callers need no "are we under systemd" checks.
package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// EnvSocket is the variable systemd sets to the notification socket's address.
const EnvSocket = "NOTIFY_SOCKET"

// sendTimeout bounds one send: systemd reads its socket promptly, and a stuck reader must
// never stall the supervisor loop that reports worker counts.
const sendTimeout = time.Second

// ErrUnsupportedSocket is returned for NOTIFY_SOCKET addresses this client does not speak
// (vsock: and the like): only Unix sockets, by path or in the abstract namespace.
var ErrUnsupportedSocket = errors.New("sdnotify: unsupported NOTIFY_SOCKET address")

// Notifier sends notifications to one socket.
type Notifier struct {
	mu   sync.Mutex
	conn *net.UnixConn
	addr string
}

// FromEnv returns a Notifier for $NOTIFY_SOCKET, or nil (a valid no-op Notifier) when it is
// unset. It removes NOTIFY_SOCKET from the environment, as sd_notify's unset_environment
// does, so that the Python workers (which inherit the environment) cannot speak for herd.
func FromEnv() (*Notifier, error) {
	addr, ok := os.LookupEnv(EnvSocket)
	_ = os.Unsetenv(EnvSocket)
	if !ok || addr == "" {
		return nil, nil
	}
	return Dial(addr)
}

// Dial opens a Notifier to addr: an absolute path, or "@name" for the abstract namespace.
func Dial(addr string) (*Notifier, error) {
	if !strings.HasPrefix(addr, "/") && !strings.HasPrefix(addr, "@") {
		return nil, fmt.Errorf("%w: %q", ErrUnsupportedSocket, addr)
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("sdnotify: dial %s: %w", addr, err)
	}
	return &Notifier{conn: conn, addr: addr}, nil
}

// Send sends the assignments ("READY=1", "STATUS=...") as one datagram.
func (n *Notifier) Send(assignments ...string) error {
	if n == nil {
		return nil
	}
	msg := strings.Join(assignments, "\n") + "\n"
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.conn == nil {
		return fmt.Errorf("sdnotify: send to %s: %w", n.addr, net.ErrClosed)
	}
	_ = n.conn.SetWriteDeadline(time.Now().Add(sendTimeout))
	if _, err := n.conn.Write([]byte(msg)); err != nil {
		return fmt.Errorf("sdnotify: send to %s: %w", n.addr, err)
	}
	return nil
}

// Ready says the service is up (after start, or after a reload), with a status line.
func (n *Notifier) Ready(status string) error {
	return n.Send("READY=1", "STATUS="+status)
}

// Reloading says a reload began. systemd 253 and later (Type=notify-reload) want the
// CLOCK_MONOTONIC time with it, to tell this reload from an earlier one; READY=1 ends it.
func (n *Notifier) Reloading(status string) error {
	return n.Send("RELOADING=1", "MONOTONIC_USEC="+strconv.FormatUint(monotonicUsec(), 10), "STATUS="+status)
}

// Stopping says the service is shutting down.
func (n *Notifier) Stopping(status string) error {
	return n.Send("STOPPING=1", "STATUS="+status)
}

// Status updates the free-form status line systemctl status shows.
func (n *Notifier) Status(status string) error {
	return n.Send("STATUS=" + status)
}

// MainPID tells systemd that another process is now the service's main process (a master
// that re-executed itself as a new child).
func (n *Notifier) MainPID(pid int) error {
	return n.Send("MAINPID=" + strconv.Itoa(pid))
}

// Addr is the socket's address ("" for a nil Notifier), for a successor process to dial.
func (n *Notifier) Addr() string {
	if n == nil {
		return ""
	}
	return n.addr
}

// Close closes the socket; later sends fail.
func (n *Notifier) Close() error {
	if n == nil {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.conn == nil {
		return nil
	}
	err := n.conn.Close()
	n.conn = nil
	return err
}

func monotonicUsec() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return uint64(ts.Sec)*1e6 + uint64(ts.Nsec)/1e3
}
