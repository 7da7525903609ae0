package accesslog_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// waitForLines waits until the file holds n lines and returns them.
func waitForLines(t *testing.T, path string, n int) []string {
	t.Helper()
	var lines []string
	herdtest.EventuallyNil(t, 10*time.Second, fmt.Sprintf("%d lines in %s", n, filepath.Base(path)), func() error {
		b, _ := os.ReadFile(path)
		lines = strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		if len(b) == 0 || len(lines) < n {
			return fmt.Errorf("it has %q", b)
		}
		return nil
	})
	return lines
}

// TestCombinedAccessLogReopensOnSIGUSR1 is a logrotate cycle: lines in Apache's combined
// format go to the file, the file is moved away, SIGUSR1, and the next line lands in a
// new file at the old path.
func TestCombinedAccessLogReopensOnSIGUSR1(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	h := herdtest.Start(t, herdtest.Options{Args: []string{"app:app", "--workers", "1", "--threads", "2",
		"--access-log", path, "--access-log-format", "combined"}})
	h.WaitReady(1, 60*time.Second)
	c := herdtest.Client()
	if code, _ := herdtest.Get(t, c, h.URL+"/?before=rotation"); code != 200 {
		t.Fatalf("status %d", code)
	}
	first := waitForLines(t, path, 1)
	combined := regexp.MustCompile(`^127\.0\.0\.1 - - \[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "GET /\?before=rotation HTTP/1\.1" 200 17 "-" "Go-http-client/1\.1"$`)
	if len(first) != 1 || !combined.MatchString(first[0]) {
		t.Fatalf("not one combined line: %q", first)
	}

	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	from := len(h.Events())
	if err := h.Cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := h.WaitEvent(from, 10*time.Second, herdtest.IsMsg("SIGUSR1: log files reopened")); !ok {
		t.Fatal("no reopen logged after SIGUSR1")
	}
	if code, _ := herdtest.Get(t, c, h.URL+"/nope?after=rotation"); code != 404 {
		t.Fatalf("status %d", code)
	}
	after := waitForLines(t, path, 1)
	if len(after) != 1 || !strings.Contains(after[0], `"GET /nope?after=rotation HTTP/1.1" 404 10 `) {
		t.Fatalf("new access.log: %q", after)
	}
	if rotated := waitForLines(t, path+".1", 1); len(rotated) != 1 {
		t.Fatalf("rotated file has %d lines, want only the one before rotation: %q", len(rotated), rotated)
	}
	if !h.Running() {
		t.Fatal("herd exited on SIGUSR1")
	}
}
