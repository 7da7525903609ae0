// Package herdtest runs a real herd binary for end-to-end tests: it builds the binary once
// per test process, starts it on a free port with JSON logs, and lets tests wait for log
// events (worker ready, worker died ...) instead of sleeping.
package herdtest

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Binary returns the path of a herd binary built from this checkout.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		// make test-go builds one binary for every test package: each package's test
		// process would otherwise build its own, minutes of CPU on two cores.
		if prebuilt := os.Getenv("HERD_TEST_BINARY"); prebuilt != "" {
			buildPath = prebuilt
			if _, err := os.Stat(prebuilt); err != nil {
				buildErr = fmt.Errorf("HERD_TEST_BINARY: %w", err)
			}
			return
		}
		dir, err := os.MkdirTemp("", "herdtest-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "herd")
		args := []string{"build", "-o", buildPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "github.com/herd-server/herd/cmd/herd")
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build herd: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// RepoRoot is the checkout's top directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// ExampleDir is scripts/example, where the example apps live.
func ExampleDir(t testing.TB) string { return filepath.Join(RepoRoot(t), "scripts", "example") }

// Event is one JSON log line of herd.
type Event map[string]any

// Str returns a string field ("" when absent).
func (e Event) Str(k string) string { s, _ := e[k].(string); return s }

// Int returns a numeric field (-1 when absent).
func (e Event) Int(k string) int {
	if f, ok := e[k].(float64); ok {
		return int(f)
	}
	return -1
}

// Msg is the event's message.
func (e Event) Msg() string { return e.Str("message") }

// Instance is one running herd master.
type Instance struct {
	t    testing.TB
	Cmd  *exec.Cmd
	Addr string // host:port of the HTTP listener
	URL  string // http://Addr
	// AdminURL is http://host:port of the admin server when Options.Admin asked for one.
	AdminURL string

	mu     sync.Mutex
	cond   *sync.Cond
	events []Event
	raw    []string
	done   bool // the master exited
	// logEnded: every writer of the log is gone (the master and any master it started).
	logEnded bool
	upgraded bool // Upgrade started a master that writes on to the log
	exit     error
	exited   chan struct{}
}

// Options for Start.
type Options struct {
	Command string   // the herd command: "serve" (default) or "dev"
	Args    []string // after the command; --http and --log-format are added
	Dir     string   // working directory; default: the example app directory
	Env     []string // extra environment
	// Listen, when set, is the address the test's own flags or config file make herd
	// listen on (a uWSGI ini, gunicorn's -b, a socket passed by activation): Start then adds
	// no --http of its own.
	Listen string
	// Admin starts the admin server (--admin) on a free loopback port: see AdminURL.
	Admin bool
	// Wrap is a command line herd runs under, e.g. unshare or Activation's shell.
	Wrap []string
	// ExtraFiles become descriptors 3, 4 ... of the first process (the wrapper, if any).
	ExtraFiles []*os.File
}

// Activation plays systemd's socket activation: it returns Options with the sockets passed
// as descriptors 3... and LISTEN_FDS, LISTEN_FDNAMES and (by a shell that execs herd, so the
// pid stays) LISTEN_PID set.
func Activation(files []*os.File, names []string) Options {
	return Options{
		Wrap:       []string{"/bin/sh", "-c", `LISTEN_PID=$$ exec "$@"`, "sh"},
		ExtraFiles: files,
		Env:        []string{fmt.Sprintf("LISTEN_FDS=%d", len(files)), "LISTEN_FDNAMES=" + strings.Join(names, ":")},
	}
}

// Start runs `herd serve` (or opts.Command) with opts and returns once the master has
// started (not necessarily with ready workers: use WaitReady). The process is stopped at cleanup.
func Start(t testing.TB, opts Options) *Instance {
	t.Helper()
	addr := opts.Listen
	command := opts.Command
	if command == "" {
		command = "serve"
	}
	args := []string{command, "--log-format", "json"}
	// Port 0, and the addresses read from the master's start-up line: a port found free a
	// moment before may be taken by then when many tests start servers at once.
	pickPort := addr == ""
	if pickPort {
		args = append(args, "--http", "127.0.0.1:0")
	}
	if opts.Admin {
		args = append(args, "--admin", "127.0.0.1:0")
	}
	args = append(args, opts.Args...)
	argv := append(append([]string{}, opts.Wrap...), append([]string{Binary(t)}, args...)...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.ExtraFiles = opts.ExtraFiles
	cmd.Dir = opts.Dir
	if cmd.Dir == "" {
		cmd.Dir = ExampleDir(t)
	}
	cmd.Env = append(os.Environ(), opts.Env...)
	// The log is read from a pipe of our own rather than StderrPipe, whose read end Wait
	// closes: a master started by this one (USR2) writes on after the first exits.
	stderr, logWriter, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logWriter
	cmd.Stdout = os.Stdout
	err = cmd.Start()
	_ = logWriter.Close()
	if err != nil {
		_ = stderr.Close()
		t.Fatal(err)
	}
	in := &Instance{t: t, Cmd: cmd, Addr: addr, URL: "http://" + addr, exited: make(chan struct{})}
	in.cond = sync.NewCond(&in.mu)
	go in.readLog(stderr)
	go in.waitExit()
	if pickPort || opts.Admin {
		in.takeAddrs(pickPort, opts.Admin)
	}
	t.Cleanup(func() {
		if in.Running() {
			_ = cmd.Process.Signal(syscall.SIGKILL)
		}
		<-in.exited
		if t.Failed() {
			in.dumpLog()
		}
	})
	return in
}

// takeAddrs reads the addresses the master bound on port 0 from its log: the HTTP one from
// the start-up line, the admin one from its own line. A master that exits first (a start
// that fails) leaves them empty.
func (in *Instance) takeAddrs(http, admin bool) {
	if http {
		if ev, _, ok := in.WaitEvent(0, time.Minute, IsMsg("herd is starting")); ok {
			if lns, _ := ev["http"].([]any); len(lns) > 0 {
				in.Addr, _ = lns[0].(string)
				in.URL = "http://" + in.Addr
			}
		}
	}
	if admin {
		if ev, _, ok := in.WaitEvent(0, time.Minute, IsMsg("admin server listening")); ok {
			in.AdminURL = "http://" + ev.Str("admin")
		}
	}
}

// readLog collects the log until every process writing it is gone.
func (in *Instance) readLog(r *os.File) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 8<<20)
	for sc.Scan() {
		line := sc.Text()
		var ev Event
		_ = json.Unmarshal([]byte(line), &ev)
		in.mu.Lock()
		in.raw = append(in.raw, line)
		if ev != nil {
			in.events = append(in.events, ev)
		}
		in.cond.Broadcast()
		in.mu.Unlock()
	}
	in.mu.Lock()
	in.logEnded = true
	in.cond.Broadcast()
	in.mu.Unlock()
}

func (in *Instance) waitExit() {
	err := in.Cmd.Wait()
	in.mu.Lock()
	in.done = true
	in.exit = err
	in.cond.Broadcast()
	in.mu.Unlock()
	close(in.exited)
}

func (in *Instance) dumpLog() {
	in.mu.Lock()
	defer in.mu.Unlock()
	n := len(in.raw)
	from := max(0, n-200)
	in.t.Logf("herd log (last %d of %d lines):\n%s", n-from, n, strings.Join(in.raw[from:], "\n"))
}

// Running reports whether the master process has not exited.
func (in *Instance) Running() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return !in.done
}

// Wait waits for the master to exit and for the last of its log to be read, and returns its
// exit code (-1 if killed). The exit alone does not say that the reader has caught up: what
// the master printed last (the traceback of an app that does not load) may still be in the
// pipe. After Upgrade the new master writes on, and Wait waits for the exit only.
func (in *Instance) Wait(timeout time.Duration) int {
	in.t.Helper()
	deadline := time.Now().Add(timeout)
	select {
	case <-in.exited:
	case <-time.After(timeout):
		in.t.Fatalf("herd did not exit within %s", timeout)
	}
	in.mu.Lock()
	read := in.until(time.Until(deadline), func() bool { return in.logEnded || in.upgraded })
	in.mu.Unlock()
	if !read {
		in.t.Fatalf("herd exited, but its log did not end within %s: another process writes it", timeout)
	}
	return in.Cmd.ProcessState.ExitCode()
}

// until waits, with in.mu held, until done holds or limit passes, and says whether done
// holds. Whatever changes the log or the exit broadcasts in.cond.
func (in *Instance) until(limit time.Duration, done func() bool) bool {
	deadline := time.Now().Add(limit)
	timer := time.AfterFunc(limit, func() {
		in.mu.Lock()
		in.cond.Broadcast()
		in.mu.Unlock()
	})
	defer timer.Stop()
	for !done() {
		if !time.Now().Before(deadline) {
			return false
		}
		in.cond.Wait()
	}
	return true
}

// Output is everything herd wrote to stderr so far.
func (in *Instance) Output() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return strings.Join(in.raw, "\n")
}

// WaitEvent waits for the first event from index `from` on that matches, and returns it and
// the index after it.
func (in *Instance) WaitEvent(from int, timeout time.Duration, match func(Event) bool) (Event, int, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	i, found := from, false
	in.until(timeout, func() bool {
		for ; i < len(in.events); i++ {
			if match(in.events[i]) {
				found = true
				return true
			}
		}
		return in.logEnded
	})
	if !found {
		return nil, i, false
	}
	return in.events[i], i + 1, true
}

// Events returns a copy of the events so far.
func (in *Instance) Events() []Event {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]Event(nil), in.events...)
}

// WaitReady waits until n workers have said ready and returns their pids.
func (in *Instance) WaitReady(n int, timeout time.Duration) []int {
	in.t.Helper()
	var pids []int
	from := 0
	deadline := time.Now().Add(timeout)
	for len(pids) < n {
		ev, next, ok := in.WaitEvent(from, time.Until(deadline), IsMsg("worker ready"))
		if !ok {
			in.t.Fatalf("only %d of %d workers ready within %s", len(pids), n, timeout)
		}
		pids = append(pids, ev.Int("pid"))
		from = next
	}
	return pids
}

// IsMsg matches events with that message.
func IsMsg(msg string) func(Event) bool {
	return func(e Event) bool { return e.Msg() == msg }
}

// RunDir is the master's private runtime directory, from its start-up log line.
func (in *Instance) RunDir() string {
	in.t.Helper()
	return in.startLine().Str("runtime_dir")
}

// FreeAddr returns a loopback address with a port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// WaitListening waits until a TCP connection to addr succeeds: the server who, started by the
// test, is up.
func WaitListening(t testing.TB, addr string, limit time.Duration, who string) {
	t.Helper()
	EventuallyNil(t, limit, who+" listening on "+addr, func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	})
}

// Client is an HTTP client with a per-request timeout for tests.
func Client() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
}

// Get fetches url and returns its status and body; a failed request fails the test.
func Get(t testing.TB, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// ChildPids lists the live processes whose parent is pid.
func ChildPids(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var child int
		if _, err := fmt.Sscanf(e.Name(), "%d", &child); err != nil {
			continue
		}
		if ppid, ok := ParentOf(child); ok && ppid == pid {
			out = append(out, child)
		}
	}
	return out
}

// ParentOf is the parent of a live process; false when it is gone or a zombie.
func ParentOf(pid int) (int, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	var state string
	var ppid int
	if _, err := fmt.Sscanf(s[i+1:], " %s %d", &state, &ppid); err != nil {
		return 0, false
	}
	return ppid, state != "Z"
}

// Alive reports whether a process exists and is not a zombie.
func Alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && len(s) > i+2 && s[i+2] != 'Z'
}

// RequireTool skips the test when a command is missing, naming the Debian package that
// brings it, unless HERD_REQUIRE_ALL=1 (as in CI), where a missing tool fails the test.
func RequireTool(t testing.TB, command, debianPackage string) string {
	t.Helper()
	path, err := exec.LookPath(command)
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("%s not found: install Debian's %s package (make deps does)", command, debianPackage)
	if os.Getenv("HERD_REQUIRE_ALL") == "1" {
		t.Fatal(msg + " [HERD_REQUIRE_ALL=1: skips are failures]")
	}
	t.Skip(msg)
	return ""
}

// OpenTempDir is a temporary directory that nobody (65534) may enter and read: t.TempDir's
// parent is closed to other users.
func OpenTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "herd-open-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// RequireRoot skips the test when herd's tests do not run as root (as CI does, and as
// `make test` must to install packages), unless HERD_REQUIRE_ALL=1, where it fails.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	msg := "needs root: " + why
	if os.Getenv("HERD_REQUIRE_ALL") == "1" {
		t.Fatal(msg + " [HERD_REQUIRE_ALL=1: skips are failures]")
	}
	t.Skip(msg)
}

// RequirePythonModule is RequireTool for a module importable by a given interpreter, e.g.
// flask under /usr/bin/python3.
func RequirePythonModule(t testing.TB, python, module, debianPackage string) {
	t.Helper()
	RequireTool(t, python, "python3")
	if err := exec.Command(python, "-c", "import "+module).Run(); err == nil {
		return
	}
	msg := fmt.Sprintf("%s cannot import %s: install Debian's %s package (make deps does)", python, module, debianPackage)
	if os.Getenv("HERD_REQUIRE_ALL") == "1" {
		t.Fatal(msg + " [HERD_REQUIRE_ALL=1: skips are failures]")
	}
	t.Skip(msg)
}

// The venv of today's peers, checked once per test process.
var (
	venvOnce sync.Once
	venvDir  string
	venvErr  string
)

// VenvDir is the venv of today's peers and frameworks from PyPI (make venv, from
// requirements/peers.txt: Django 6.1, Flask 3.1, gunicorn 27, Granian, uvicorn, uWSGI as
// pyuwsgi, FastAPI, gevent): $HERD_TEST_VENV, by default .venv in the checkout. When it is
// missing, half built, built from other pins or its interpreter is gone, the test skips
// naming `make venv`, or fails under HERD_REQUIRE_ALL=1 (as in CI), as RequireTool does.
func VenvDir(t testing.TB) string {
	t.Helper()
	venvOnce.Do(func() { venvDir, venvErr = checkVenv(RepoRoot(t)) })
	if venvErr == "" {
		return venvDir
	}
	if os.Getenv("HERD_REQUIRE_ALL") == "1" {
		t.Fatal(venvErr + " [HERD_REQUIRE_ALL=1: skips are failures]")
	}
	t.Skip(venvErr)
	return ""
}

// VenvPython is the venv's interpreter, VenvDir/bin/python: the path to give herd's
// --python, or a peer's command (bin/uwsgi, bin/gunicorn, bin/granian are beside it).
func VenvPython(t testing.TB) string {
	t.Helper()
	return filepath.Join(VenvDir(t), "bin", "python")
}

// checkVenv returns the venv's directory, or why it cannot serve: scripts/venv.sh writes
// its stamp last, with the sha256 of the pins it installed.
func checkVenv(root string) (dir, problem string) {
	dir = os.Getenv("HERD_TEST_VENV")
	if dir == "" {
		dir = filepath.Join(root, ".venv")
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs // herd and peers run in other directories
	}
	pins := filepath.Join(root, "requirements", "peers.txt")
	stamp, err := os.ReadFile(filepath.Join(dir, ".herd-stamp"))
	if err != nil {
		return dir, fmt.Sprintf("no venv of today's peers at %s: make venv builds it from %s", dir, pins)
	}
	want, err := os.ReadFile(pins)
	if err != nil {
		return dir, fmt.Sprintf("venv: %v", err)
	}
	sum := sha256.Sum256(want)
	if !strings.Contains(string(stamp), hex.EncodeToString(sum[:])) {
		return dir, fmt.Sprintf("the venv at %s was built from other pins than %s: make venv rebuilds it", dir, pins)
	}
	python := filepath.Join(dir, "bin", "python")
	if out, err := exec.Command(python, "-c", "import django, flask").CombinedOutput(); err != nil {
		return dir, fmt.Sprintf("%s cannot import Django and Flask (%v: %s): rm -rf %s && make venv",
			python, err, strings.TrimSpace(string(out)), dir)
	}
	return dir, ""
}

// CopyExample copies the example apps (scripts/example) into a fresh temporary directory,
// for tests that edit the app's files while herd serves it.
func CopyExample(t testing.TB) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(ExampleDir(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue // __pycache__
		}
		b, err := os.ReadFile(filepath.Join(ExampleDir(t), e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// Count is how many events so far match.
func (in *Instance) Count(match func(Event) bool) int {
	n := 0
	for _, ev := range in.Events() {
		if match(ev) {
			n++
		}
	}
	return n
}

// ArtifactDir is where tests leave files for people to look at (screenshots, figures):
// $HERD_ARTIFACTS, else bin/test-artifacts in the checkout (ignored by git). It outlives
// the test.
func ArtifactDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("HERD_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(RepoRoot(t), "bin", "test-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Result is what a short herd command (check, status, stop ...) printed and its exit code.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Run runs the herd binary with args in dir (default: the example app directory), with env
// added to the environment, and waits up to a minute for it.
func Run(t testing.TB, dir string, env []string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(t), args...)
	cmd.Dir = dir
	if dir == "" {
		cmd.Dir = ExampleDir(t)
	}
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("herd %s: %v", strings.Join(args, " "), err)
	}
	return Result{Stdout: stdout.String(), Stderr: stderr.String(), Code: cmd.ProcessState.ExitCode()}
}

// Signal sends sig to the master.
func (in *Instance) Signal(sig syscall.Signal) {
	in.t.Helper()
	if err := in.Cmd.Process.Signal(sig); err != nil {
		in.t.Fatalf("signal %s to herd: %v", sig, err)
	}
}

// Upgrade sends USR2 and waits up to timeout for the new master's start-up line; it returns
// the new master's pid. The new master is not in Cmd, which Start's cleanup stops, so it is
// killed at cleanup here.
func (in *Instance) Upgrade(timeout time.Duration) int {
	in.t.Helper()
	oldPid := in.Cmd.Process.Pid
	from := len(in.Events())
	in.Signal(syscall.SIGUSR2)
	ev, _, ok := in.WaitEvent(from, timeout, func(e Event) bool {
		return e.Msg() == "herd is starting" && e.Int("pid") != oldPid
	})
	if !ok {
		in.t.Fatal("no new master started after USR2")
	}
	in.mu.Lock()
	in.upgraded = true
	in.mu.Unlock()
	newPid := ev.Int("pid")
	in.t.Cleanup(func() {
		_ = syscall.Kill(newPid, syscall.SIGKILL)
		Poll(10*time.Second, func() bool { return !Alive(newPid) })
	})
	return newPid
}

// Load is client traffic that runs until Stop: each client goroutine sends requests one
// after another without pause, and every transport error or unexpected answer is counted.
type Load struct {
	stop chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	sent     int
	failures []string
}

// LoadResult is what a Load saw.
type LoadResult struct {
	Sent     int
	Failed   int
	Failures []string // the first few, for the test's message
}

// StartLoad sends GET url from clients goroutines until Stop. check judges each answer
// (nil: any 2xx is right); it runs in the client goroutines.
func StartLoad(url string, clients int, check func(status int, body string) error) *Load {
	l := &Load{stop: make(chan struct{})}
	c := Client()
	for range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				err := fetch(c, url, check)
				l.mu.Lock()
				l.sent++
				if err != nil {
					l.failures = append(l.failures, err.Error())
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func fetch(c *http.Client, url string, check func(int, string) error) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if check != nil {
		return check(resp.StatusCode, string(b))
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("status %d: %q", resp.StatusCode, b)
	}
	return nil
}

// Sent is how many requests were answered or failed so far.
func (l *Load) Sent() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sent
}

// Stop ends the load, waits for the requests in flight, and reports.
func (l *Load) Stop() LoadResult {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	r := LoadResult{Sent: l.sent, Failed: len(l.failures)}
	r.Failures = l.failures[:min(len(l.failures), 10)]
	return r
}

// RaceEnabled reports whether the herd binary under test carries the race detector, whose
// shadow memory makes its RSS figures several times larger.
const RaceEnabled = raceEnabled

// Bool returns a boolean field (false when absent).
func (e Event) Bool(k string) bool { b, _ := e[k].(bool); return b }
