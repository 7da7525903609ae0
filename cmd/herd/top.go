package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/herd-server/herd/admin"
)

func newTopCmd() *cobra.Command {
	var interval time.Duration
	var once bool
	cmd := clientCmd("top", "a live view of a running master: workers, requests/s, latency percentiles",
		"A live view of a running master, redrawn in place every --interval: the worker table\n"+
			"(state, requests, memory, current request), requests/s and p50/p99 latency.\n"+
			"q quits. It reads the master's stats over the control socket.",
		"  herd top\n  herd top --pid 1234 --interval 500ms\n  herd top --once    # one frame, for scripts", 5*time.Second,
		func(cmd *cobra.Command, master *targetFlags) error {
			fetch := func() (admin.Stats, error) {
				var st admin.Stats
				err := master.call("stats", nil, &st)
				return st, err
			}
			if once {
				st, err := fetch()
				if err != nil {
					return err
				}
				_, err = fmt.Fprintln(cmd.OutOrStdout(), strings.Join(admin.TopScreen(st, 0, 0), "\n"))
				return err
			}
			return runTop(os.Stdin, cmd.OutOrStdout(), interval, fetch)
		})
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "how often the view is refreshed")
	cmd.Flags().BoolVar(&once, "once", false, "print one frame and exit")
	return cmd
}

// runTop redraws the view every interval until q (or Ctrl-D) on in. The terminal is put in
// non-canonical mode without echo so that q needs no Enter, and restored on the way out;
// the view goes to the alternate screen, as top's does.
func runTop(in *os.File, out io.Writer, interval time.Duration, fetch func() (admin.Stats, error)) error {
	fd := int(in.Fd())
	if restore, err := keysWithoutEnter(fd); err == nil {
		defer restore()
	}
	fmt.Fprint(out, "\x1b[?1049h\x1b[?25l") // alternate screen, hide the cursor
	defer fmt.Fprint(out, "\x1b[?25h\x1b[?1049l")
	// Ctrl-C quits like q, through the same restoring path.
	interrupted := make(chan os.Signal, 1)
	signal.Notify(interrupted, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(interrupted)
	var lastErr error
	for {
		width, height := terminalSize(fd)
		st, err := fetch()
		var lines []string
		if err != nil {
			lines = []string{"herd top: " + err.Error(), "", "q quits"}
			lastErr = err
		} else {
			lines, lastErr = admin.TopScreen(st, width, height), nil
		}
		var b strings.Builder
		b.WriteString("\x1b[H") // home, then overwrite each line and clear what is left
		for _, l := range lines {
			b.WriteString(l)
			b.WriteString("\x1b[K\r\n")
		}
		b.WriteString("\x1b[J")
		if _, err := io.WriteString(out, b.String()); err != nil {
			return err
		}
		quit, err := waitForKey(fd, interval, interrupted)
		if err != nil {
			return err
		}
		if quit {
			return lastErr
		}
	}
}

// waitForKey waits up to d for input and reports whether it asked to quit (q, Ctrl-D, end
// of input, or a signal on interrupted).
func waitForKey(fd int, d time.Duration, interrupted <-chan os.Signal) (bool, error) {
	deadline := time.Now().Add(d)
	for {
		select {
		case <-interrupted:
			return true, nil
		default:
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false, nil
		}
		// Short polls, so that a signal is noticed within 100 ms.
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(min(left, 100*time.Millisecond).Milliseconds())+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("top: wait for keys: %w", err)
		}
		if n == 0 {
			return false, nil
		}
		buf := make([]byte, 64)
		k, err := unix.Read(fd, buf)
		if k == 0 || err != nil {
			return true, nil // end of input: nobody can press q any more
		}
		for _, c := range buf[:k] {
			if c == 'q' || c == 'Q' || c == 4 { // 4: Ctrl-D
				return true, nil
			}
		}
	}
}

// keysWithoutEnter turns off line buffering and echo on a terminal (signals stay on, so
// Ctrl-C still works) and returns the function that restores it.
func keysWithoutEnter(fd int) (func(), error) {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err // not a terminal
	}
	raw := *old
	raw.Lflag &^= unix.ICANON | unix.ECHO
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil, err
	}
	return func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}

// terminalSize is the size of the terminal on fd or on stdout; 0, 0 when neither is one.
func terminalSize(fd int) (int, int) {
	for _, f := range []int{int(os.Stdout.Fd()), fd} {
		if ws, err := unix.IoctlGetWinsize(f, unix.TIOCGWINSZ); err == nil && ws.Col > 0 {
			return int(ws.Col), int(ws.Row)
		}
	}
	return 0, 0
}
