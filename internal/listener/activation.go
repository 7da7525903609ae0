// Package listener opens the sockets herd serves on: its own (--http), the ones systemd
// passes by socket activation (LISTEN_FDS), and wraps those that must start with a PROXY
// protocol header. It knows nothing of HTTP or uwsgi: it hands out net.Listeners.
package listener

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Socket activation, as sd_listen_fds(3) defines it: the passed sockets are descriptors
// 3 .. 3+LISTEN_FDS-1, meant for the process whose pid is LISTEN_PID, optionally named by
// LISTEN_FDNAMES (colon-separated, from the socket unit's FileDescriptorName=).
const (
	EnvFDs     = "LISTEN_FDS"
	EnvPID     = "LISTEN_PID"
	EnvFDNames = "LISTEN_FDNAMES"
	firstFD    = 3
)

// EnvFromParent says that LISTEN_PID names the parent of the process: a herd that hands its
// sockets to a child herd (PID 1 to the real master, a master re-executing itself) cannot
// know the child's pid before it starts, so it names itself and sets this.
const EnvFromParent = "HERD_LISTEN_FROM_PARENT"

// ErrActivation is wrapped by every error about malformed socket-activation variables.
var ErrActivation = errors.New("socket activation")

// Activated is one socket systemd passed.
type Activated struct {
	Name     string // from LISTEN_FDNAMES; "unknown" when unnamed, as systemd says
	Listener net.Listener
}

// FromEnv returns the listening sockets passed by socket activation, or none when the
// variables are absent or meant for another process. It removes the variables from the
// environment (sd_listen_fds with unset_environment), so that the workers, which inherit the
// environment, do not take the sockets for theirs; and marks the descriptors close-on-exec.
func FromEnv() ([]Activated, error) {
	fdsVar, ok := os.LookupEnv(EnvFDs)
	pidVar := os.Getenv(EnvPID)
	namesVar := os.Getenv(EnvFDNames)
	fromParent := os.Getenv(EnvFromParent) == "1"
	for _, k := range []string{EnvFDs, EnvPID, EnvFDNames, EnvFromParent} {
		_ = os.Unsetenv(k)
	}
	if !ok {
		return nil, nil
	}
	pid, err := strconv.Atoi(pidVar)
	if err != nil {
		return nil, fmt.Errorf("%w: %s=%q is not a pid", ErrActivation, EnvPID, pidVar)
	}
	if pid != os.Getpid() && !(pid == os.Getppid() && fromParent) {
		return nil, nil // meant for the process that started us, not for us
	}
	n, err := strconv.Atoi(fdsVar)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("%w: %s=%q is not a count", ErrActivation, EnvFDs, fdsVar)
	}
	names := namesFor(namesVar, n)
	if fromParent {
		for i := range names {
			names[i] = unescapeName(names[i])
		}
	}
	var out []Activated
	for i := range n {
		fd := firstFD + i
		syscall.CloseOnExec(fd)
		ln, err := fileListener(fd, names[i])
		if err != nil {
			closeActivated(out)
			return nil, err
		}
		if u, ok := ln.(*net.UnixListener); ok && fromParent {
			// The socket file was made by the herd that handed it over; the last herd
			// serving on it removes it, as a herd that opened it itself would.
			u.SetUnlinkOnClose(true)
		}
		out = append(out, Activated{Name: names[i], Listener: ln})
	}
	return out, nil
}

// Hand-over names are --http addresses such as 127.0.0.1:8000, while LISTEN_FDNAMES
// separates names with colons (systemd's names cannot hold one): escaped in between.
var (
	nameEscaper   = strings.NewReplacer("%", "%25", ":", "%3A")
	nameUnescaper = strings.NewReplacer("%3A", ":", "%25", "%")
)

func escapeName(name string) string   { return nameEscaper.Replace(name) }
func unescapeName(name string) string { return nameUnescaper.Replace(name) }

// namesFor splits LISTEN_FDNAMES, padding with "unknown" like sd_listen_fds_with_names.
func namesFor(v string, n int) []string {
	var names []string
	if v != "" {
		names = strings.Split(v, ":")
	}
	for len(names) < n {
		names = append(names, "unknown")
	}
	return names[:n]
}

func fileListener(fd int, name string) (net.Listener, error) {
	f := os.NewFile(uintptr(fd), "listen-fd-"+name)
	defer f.Close() // FileListener dups it
	typ, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TYPE)
	if err != nil {
		return nil, fmt.Errorf("%w: descriptor %d (%s) is not a socket: %w", ErrActivation, fd, name, err)
	}
	if typ != syscall.SOCK_STREAM {
		return nil, fmt.Errorf("%w: descriptor %d (%s) is not a stream socket (ListenStream= in the socket unit)", ErrActivation, fd, name)
	}
	listening, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ACCEPTCONN)
	if err != nil || listening != 1 {
		return nil, fmt.Errorf("%w: descriptor %d (%s) is not a listening socket (herd wants Accept=no in the socket unit)", ErrActivation, fd, name)
	}
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("%w: descriptor %d (%s): %w", ErrActivation, fd, name, err)
	}
	return ln, nil
}

func closeActivated(as []Activated) {
	for _, a := range as {
		_ = a.Listener.Close()
	}
}

// HandOver prepares sockets for a child herd (a re-executed master, or the master that herd
// as PID 1 starts): the files to pass as its descriptors 3, 4 ... (exec.Cmd.ExtraFiles, in
// this order) and the variables to add to its environment. The child's FromEnv takes them
// back with their names. The caller closes the files once the child has started.
func HandOver(sockets []Activated) (files []*os.File, env []string, err error) {
	names := make([]string, 0, len(sockets))
	for _, s := range sockets {
		f, err := File(s.Listener)
		if err != nil {
			for _, f := range files {
				_ = f.Close()
			}
			return nil, nil, fmt.Errorf("hand over %s: %w", s.Name, err)
		}
		files = append(files, f)
		names = append(names, escapeName(s.Name))
	}
	env = []string{
		EnvFDs + "=" + strconv.Itoa(len(files)),
		EnvFDNames + "=" + strings.Join(names, ":"),
		EnvPID + "=" + strconv.Itoa(os.Getpid()),
		EnvFromParent + "=1",
	}
	return files, env, nil
}

// File returns a duplicate of a listener's socket as a file, seeing through ProxyListener.
func File(ln net.Listener) (*os.File, error) {
	if p, ok := ln.(*ProxyListener); ok {
		ln = p.Listener
	}
	f, ok := ln.(interface{ File() (*os.File, error) })
	if !ok {
		return nil, fmt.Errorf("%w: a %T has no file to pass", ErrActivation, ln)
	}
	return f.File()
}
