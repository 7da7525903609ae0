package admin

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

var pageSize = int64(os.Getpagesize())

// ProcessRSS is a process's resident set size in bytes, from /proc/PID/statm (its second
// field, in pages). It reads /proc rather than asking the child, so it works whoever
// started the process.
func ProcessRSS(pid int) (int64, error) {
	if pid <= 0 {
		return 0, fmt.Errorf("rss of pid %d: no such process", pid)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0, fmt.Errorf("rss of pid %d: %w", pid, err)
	}
	fields := bytes.Fields(b)
	if len(fields) < 2 {
		return 0, fmt.Errorf("rss of pid %d: short statm %q", pid, b)
	}
	pages, err := strconv.ParseInt(string(fields[1]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("rss of pid %d: %w", pid, err)
	}
	return pages * pageSize, nil
}
