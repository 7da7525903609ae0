package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// wrkReport makes wrk print its summary as one machine-readable line: exact counts and
// percentiles in microseconds, instead of its rounded human text.
const wrkReport = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
`

// load is what one wrk run measured.
type load struct {
	requests int64
	duration time.Duration
	p50, p99 time.Duration
	max      time.Duration // the slowest answered request
	// errs counts wrk's errors by kind: connect, read, write, timeout, and status
	// (answers other than 2xx/3xx).
	errs errCounts
}

type errCounts struct{ connect, read, write, timeout, status int64 }

func (c errCounts) total() int64 { return c.connect + c.read + c.write + c.timeout + c.status }

func (c errCounts) add(o errCounts) errCounts {
	return errCounts{c.connect + o.connect, c.read + o.read, c.write + o.write, c.timeout + o.timeout, c.status + o.status}
}

// String names the kinds that occurred, e.g. "14349 read".
func (c errCounts) String() string {
	var parts []string
	for _, k := range []struct {
		n    int64
		name string
	}{{c.connect, "connect"}, {c.read, "read"}, {c.write, "write"}, {c.timeout, "timeout"}, {c.status, "non-2xx/3xx"}} {
		if k.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", k.n, k.name))
		}
	}
	if len(parts) == 0 {
		return "0"
	}
	return strings.Join(parts, ", ")
}

func (l load) rps() float64 {
	if l.duration <= 0 {
		return 0
	}
	return float64(l.requests) / l.duration.Seconds()
}

// wrkArgs is the exact wrk command of one run.
func wrkArgs(script string, conns int, d time.Duration, url string) []string {
	return []string{"wrk", "-t1", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", int(d.Round(time.Second)/time.Second)),
		"--latency", "-s", script, url}
}

// wrkTimeoutArgs is wrkArgs with wrk's request timeout (2 s by default) set: a request that
// takes longer is counted as a timeout and left out of the percentiles, which would hide
// exactly the waits the mixed run looks for.
func wrkTimeoutArgs(script string, conns int, d, timeout time.Duration, url string) []string {
	args := wrkArgs(script, conns, d, url)
	return append(args[:len(args)-1:len(args)-1], "--timeout", fmt.Sprintf("%ds", int(timeout/time.Second)), url)
}

// writeWrkScript puts the app's wrk script, ending with the report, into dir.
func writeWrkScript(dir string, a app) (string, error) {
	path := filepath.Join(dir, "report.lua")
	if a.lua != "" {
		path = filepath.Join(dir, a.name+".lua")
	}
	if err := os.WriteFile(path, []byte(a.lua+wrkReport), 0o600); err != nil {
		return "", fmt.Errorf("wrk script: %w", err)
	}
	return path, nil
}

// runWrk runs wrk as a process of the registry, so that a Ctrl-C stops it too.
func runWrk(ctx context.Context, args []string) (load, error) {
	var out, errOut bytes.Buffer
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	p, err := running.start("wrk", cmd)
	if err != nil {
		return load{}, err
	}
	select {
	case <-p.done:
	case <-ctx.Done():
	}
	running.stop(p, syscall.SIGTERM, 2*time.Second) // a no-op once wrk is done
	if p.err != nil {
		return load{}, fmt.Errorf("%s: %v: %s", strings.Join(args, " "), p.err, strings.TrimSpace(errOut.String()))
	}
	return parseWrk(out.String())
}

// parseWrk reads the line wrkReport writes.
func parseWrk(out string) (load, error) {
	i := strings.Index(out, "BENCH ")
	if i < 0 {
		return load{}, fmt.Errorf("wrk printed no report line: %q", out)
	}
	line := out[i:]
	if j := strings.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	var l load
	var durUs, p50, p99, maxUs int64
	e := &l.errs
	_, err := fmt.Sscanf(line, "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d connect=%d read=%d write=%d status=%d timeout=%d",
		&l.requests, &durUs, &p50, &p99, &maxUs, &e.connect, &e.read, &e.write, &e.status, &e.timeout)
	if err != nil {
		return load{}, fmt.Errorf("wrk report %q: %w", line, err)
	}
	l.duration = time.Duration(durUs) * time.Microsecond
	l.p50 = time.Duration(p50) * time.Microsecond
	l.p99 = time.Duration(p99) * time.Microsecond
	l.max = time.Duration(maxUs) * time.Microsecond
	return l, nil
}
