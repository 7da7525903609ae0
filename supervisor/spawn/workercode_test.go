package spawn

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/herd-server/herd/internal/herdtest"
	"github.com/herd-server/herd/scripts"
)

// runWorker runs a worker installed in runDir on an app of scripts/testapps that fails to
// import, and returns its exit code and stderr: the traceback names the file the worker's
// code ran from.
func runWorker(t *testing.T, python, script string, env ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, script, "--app", "broken:app",
		"--bind", "unix:"+filepath.Join(filepath.Dir(script), "w.sock"))
	cmd.Dir = filepath.Join(herdtest.RepoRoot(t), "scripts", "testapps")
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if cmd.ProcessState == nil {
		t.Fatalf("run the worker: %v", err)
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

// TestInstallWorkerCached: the worker's code runs as a module from herd's cache, where
// Python keeps its bytecode (even when the app's is not wanted), and from the copy in the
// runtime directory when the cache was emptied under a running herd.
func TestInstallWorkerCached(t *testing.T) {
	python := realPython(t)
	cacheHome := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cacheHome)
	cacheDir := filepath.Join(cacheHome, "herd", "worker")
	runDir := t.TempDir()
	files, err := InstallWorker(runDir, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	cached, _ := filepath.Glob(filepath.Join(cacheDir, "herd_worker_*.py"))
	if files.Script != filepath.Join(runDir, "worker.py") || len(cached) != 1 || len(files.Code) != 4 || files.Code[0] != cached[0] {
		t.Fatalf("installed %+v, cached %v", files, cached)
	}
	if b, err := os.ReadFile(cached[0]); err != nil || !bytes.Equal(b, scripts.WorkerPy) {
		t.Fatalf("cached copy differs from worker.py: %v", err)
	}

	code, stderr := runWorker(t, python, files.Script, "PYTHONDONTWRITEBYTECODE=1")
	if code != 4 || !strings.Contains(stderr, "broken on purpose") || !strings.Contains(stderr, `File "`+cached[0]+`"`) {
		t.Fatalf("exit %d, want 4 with a traceback through %s:\n%s", code, cached[0], stderr)
	}
	pycs, _ := filepath.Glob(filepath.Join(cacheDir, "__pycache__", "herd_worker_*.pyc"))
	if len(pycs) != 1 {
		t.Fatalf("bytecode in the cache: %v", pycs)
	}
	before, err := os.Stat(pycs[0])
	if err != nil {
		t.Fatal(err)
	}

	// The next start finds both as they were: nothing is written or compiled again.
	if _, err := InstallWorker(t.TempDir(), zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	if code, _ := runWorker(t, python, files.Script); code != 4 {
		t.Fatalf("second start: exit %d", code)
	}
	if after, err := os.Stat(pycs[0]); err != nil || !after.ModTime().Equal(before.ModTime()) {
		t.Fatalf("bytecode rewritten: %v", err)
	}

	// The cache emptied: the workers started after that run the runtime directory's copy.
	if err := os.RemoveAll(filepath.Join(cacheHome, "herd")); err != nil {
		t.Fatal(err)
	}
	code, stderr = runWorker(t, python, files.Script)
	if code != 4 || !strings.Contains(stderr, `File "`+files.Code[1]+`"`) {
		t.Fatalf("without the cache: exit %d, want 4 through %s:\n%s", code, files.Code[1], stderr)
	}
}

// TestInstallWorkerRepairsCache: a cached copy that is not worker.py's code is rewritten,
// and the bytecode compiled from it is thrown away.
func TestInstallWorkerRepairsCache(t *testing.T) {
	python := realPython(t)
	cacheHome := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cacheHome)
	files, err := InstallWorker(t.TempDir(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	cached := files.Code[0]
	module := strings.TrimSuffix(filepath.Base(cached), ".py")
	pyc := filepath.Join(filepath.Dir(cached), "__pycache__", module+".cpython-399.pyc")
	if err := os.MkdirAll(filepath.Dir(pyc), 0o700); err != nil {
		t.Fatal(err)
	}
	for path, content := range map[string]string{cached: "raise SystemExit(9)\n", pyc: "stale"} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if files, err = InstallWorker(t.TempDir(), zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(cached); err != nil || !bytes.Equal(b, scripts.WorkerPy) {
		t.Fatalf("cached copy not repaired: %v", err)
	}
	if _, err := os.Stat(pyc); !os.IsNotExist(err) {
		t.Fatalf("stale bytecode kept: %v", err)
	}
	if code, stderr := runWorker(t, python, files.Script); code != 4 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
}

// TestInstallWorkerWithoutCache: a cache directory another user could write into is not
// used; worker.py is then the worker itself, as it always was.
func TestInstallWorkerWithoutCache(t *testing.T) {
	python := realPython(t)
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XDG_CACHE_HOME", open)
	runDir := t.TempDir()
	files, err := InstallWorker(runDir, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(runDir, "worker.py")
	if b, err := os.ReadFile(script); err != nil || !bytes.Equal(b, scripts.WorkerPy) || len(files.Code) != 2 || files.Code[0] != script {
		t.Fatalf("installed %+v (%v)", files, err)
	}
	if _, err := os.Stat(filepath.Join(open, "herd", "worker")); err != nil {
		t.Fatalf("the cache directory should exist, unused: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(open, "herd", "worker")); len(entries) != 0 {
		t.Fatalf("written into an unsafe cache: %v", entries)
	}
	if code, stderr := runWorker(t, python, script); code != 4 || !strings.Contains(stderr, `File "`+script+`"`) {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
}

// TestWorkerStartupNotAsModule: multiprocessing's spawn start method imports the main module
// of the parent in its children under another name: the start-up file must not start a
// worker there.
func TestWorkerStartupNotAsModule(t *testing.T) {
	python := realPython(t)
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	files, err := InstallWorker(t.TempDir(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(python, "-c", "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__mp_main__')", files.Script).CombinedOutput()
	if err != nil || len(out) != 0 {
		t.Fatalf("imported as __mp_main__: %v\n%s", err, out)
	}
}

// TestWorkerAsAnotherUser: workers run as another user start from a copy of the worker's
// code that user can read, kept for the next start, with a command line of a few words (it
// was the worker's whole source, 47 KB in ps); when another user made a directory of that
// name first, from a copy in a directory of its own.
func TestWorkerAsAnotherUser(t *testing.T) {
	herdtest.RequireRoot(t, "only root runs workers as another user")
	python := realPython(t) // the pyenv one under /root is closed to nobody
	tmp := herdtest.OpenTempDir(t)
	t.Setenv("TMPDIR", tmp)
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}
	apps := filepath.Join(herdtest.RepoRoot(t), "scripts", "testapps")
	run := func() (*Exec, int, string) {
		t.Helper()
		s := (&Exec{Python: python, Args: []string{"--app", "broken:app"}, Dir: apps}).WithCredential(nobody)
		var stderr bytes.Buffer
		cmd := s.command([]string{"--bind", "127.0.0.1:0"}, nil, io.Discard, &stderr)
		if line := strings.Join(cmd.Args, " "); len(line) > 200 {
			t.Fatalf("command line of %d bytes: %.300s", len(line), line)
		}
		_ = cmd.Run()
		if cmd.ProcessState == nil {
			t.Fatalf("run the worker: %v", cmd.Err)
		}
		return s, cmd.ProcessState.ExitCode(), stderr.String()
	}

	s, code, stderr := run()
	module := workerModule()
	shared := filepath.Join(tmp, sharedDirName(module))
	if s.WorkerScript != filepath.Join(shared, "worker.py") {
		t.Fatalf("started from %s, want %s/worker.py", s.WorkerScript, shared)
	}
	if code != 4 || !strings.Contains(stderr, "broken on purpose") || !strings.Contains(stderr, `File "`+filepath.Join(shared, module+".py")+`"`) {
		t.Fatalf("exit %d, want 4 with a traceback through %s:\n%s", code, shared, stderr)
	}
	for path, want := range map[string]os.FileMode{shared: 0o755 | os.ModeDir, s.WorkerScript: 0o644, filepath.Join(shared, module+".py"): 0o644} {
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want || fi.Sys().(*syscall.Stat_t).Uid != 0 {
			t.Fatalf("%s: %v, want %v owned by root", path, fi.Mode(), want)
		}
	}
	before, _ := os.Stat(s.WorkerScript)

	// The next start finds the copy as it was.
	if s, code, _ = run(); code != 4 || s.WorkerScript != filepath.Join(shared, "worker.py") {
		t.Fatalf("second start: exit %d from %s", code, s.WorkerScript)
	}
	if after, err := os.Stat(s.WorkerScript); err != nil || !after.ModTime().Equal(before.ModTime()) {
		t.Fatalf("start-up file rewritten: %v", err)
	}

	// Another user's directory of that name is left alone.
	if err := os.RemoveAll(shared); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(shared, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	s, code, stderr = run()
	if dir := filepath.Dir(s.WorkerScript); code != 4 || dir == shared || filepath.Dir(dir) != tmp || !strings.HasPrefix(filepath.Base(dir), "herd-worker-") {
		t.Fatalf("exit %d from %s, want 4 from a new directory in %s:\n%s", code, s.WorkerScript, tmp, stderr)
	}
	if entries, _ := os.ReadDir(shared); len(entries) != 0 {
		t.Fatalf("written into another user's directory: %v", entries)
	}
}

// TestWorkerAsAnotherUserUnreachable: when the workers' user cannot reach the temporary
// directory, every start fails saying so, rather than each worker exiting with a missing file.
func TestWorkerAsAnotherUserUnreachable(t *testing.T) {
	herdtest.RequireRoot(t, "only root runs workers as another user")
	t.Setenv("TMPDIR", t.TempDir()) // 0700
	s := (&Exec{Python: realPython(t)}).WithCredential(&syscall.Credential{Uid: 65534, Gid: 65534})
	_, err := s.Spawn(Spec{})
	if err == nil || !strings.Contains(err.Error(), "share the worker's code") || !strings.Contains(err.Error(), "closed to other users") {
		t.Fatalf("spawn: %v", err)
	}
}
