package spawn

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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

// checkPackage fails unless dir holds the worker's package, every file as embedded with the
// mode perm, and returns the package's directory.
func checkPackage(t *testing.T, dir string, perm os.FileMode) string {
	t.Helper()
	code := embeddedWorker()
	pkg := filepath.Join(dir, code.module)
	if len(code.files) == 0 || !strings.HasPrefix(code.module, "herd_worker_") {
		t.Fatalf("embedded package %s: %d files", code.module, len(code.files))
	}
	for _, f := range code.files {
		want, err := scripts.Worker.ReadFile(scripts.WorkerPackage + "/" + f.name)
		if err != nil {
			t.Fatal(err)
		}
		if !holds(filepath.Join(pkg, f.name), want, perm) {
			t.Fatalf("%s/%s: not the embedded file with mode %v", pkg, f.name, perm)
		}
	}
	return pkg
}

// TestInstallWorkerCached: the worker's package is imported from herd's cache, where Python
// keeps its bytecode (even when the app's is not wanted), and from the copy in the runtime
// directory when the cache was emptied under a running herd.
func TestInstallWorkerCached(t *testing.T) {
	python := realPython(t)
	cacheHome := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cacheHome)
	runDir := t.TempDir()
	files, err := InstallWorker(runDir, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	cached := checkPackage(t, filepath.Join(cacheHome, "herd", "worker"), 0o600)
	fallback := checkPackage(t, runDir, 0o600)
	init := filepath.Join(cached, "__init__.py")
	if files.Script != filepath.Join(runDir, "worker.py") || !slices.Contains(files.Code, init) ||
		!slices.Contains(files.Code, filepath.Join(fallback, "__init__.py")) || !slices.Contains(files.Code, files.Script) {
		t.Fatalf("installed %+v", files)
	}
	if b, err := os.ReadFile(files.Script); err != nil || len(b) > 2000 {
		t.Fatalf("start-up file of %d bytes: %v", len(b), err)
	}

	code, stderr := runWorker(t, python, files.Script, "PYTHONDONTWRITEBYTECODE=1")
	if code != 4 || !strings.Contains(stderr, "broken on purpose") || !strings.Contains(stderr, `File "`+cached+"/") {
		t.Fatalf("exit %d, want 4 with a traceback through %s:\n%s", code, cached, stderr)
	}
	pycs, _ := filepath.Glob(filepath.Join(cached, "__pycache__", "*.pyc"))
	// All but __main__.py and the fork server's modules (forkserver.py imports them), not
	// run here, and the asyncio worker's modules, which only an ASGI app's worker imports.
	asgiOnly := []string{"asgi.py", "asgi_ws.py", "asgi_serve.py", "lifespan.py", "frames.py"}
	if len(pycs) != len(embeddedWorker().files)-4-len(asgiOnly) {
		t.Fatalf("bytecode in the cache: %v", pycs)
	}
	before := map[string]time.Time{}
	for _, pyc := range pycs {
		fi, err := os.Stat(pyc)
		if err != nil {
			t.Fatal(err)
		}
		before[pyc] = fi.ModTime()
	}

	// The next start finds both as they were: nothing is written or compiled again.
	if _, err := InstallWorker(t.TempDir(), zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	if code, _ := runWorker(t, python, files.Script); code != 4 {
		t.Fatalf("second start: exit %d", code)
	}
	for pyc, mtime := range before {
		if after, err := os.Stat(pyc); err != nil || !after.ModTime().Equal(mtime) {
			t.Fatalf("bytecode rewritten: %s %v", pyc, err)
		}
	}

	// The cache emptied: the workers started after that run the runtime directory's copy.
	if err := os.RemoveAll(filepath.Join(cacheHome, "herd")); err != nil {
		t.Fatal(err)
	}
	code, stderr = runWorker(t, python, files.Script)
	if code != 4 || !strings.Contains(stderr, `File "`+fallback+"/") {
		t.Fatalf("without the cache: exit %d, want 4 through %s:\n%s", code, fallback, stderr)
	}
}

// TestInstallWorkerRepairsCache: a cached package whose files are not the embedded ones is
// rewritten, and the bytecode compiled from it is thrown away.
func TestInstallWorkerRepairsCache(t *testing.T) {
	python := realPython(t)
	cacheHome := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cacheHome)
	if _, err := InstallWorker(t.TempDir(), zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	cached := checkPackage(t, filepath.Join(cacheHome, "herd", "worker"), 0o600)
	pyc := filepath.Join(cached, "__pycache__", "__init__.cpython-399.pyc")
	if err := os.MkdirAll(filepath.Dir(pyc), 0o700); err != nil {
		t.Fatal(err)
	}
	for path, content := range map[string]string{filepath.Join(cached, "__init__.py"): "raise SystemExit(9)\n", pyc: "stale"} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	files, err := InstallWorker(t.TempDir(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	checkPackage(t, filepath.Join(cacheHome, "herd", "worker"), 0o600)
	if _, err := os.Stat(pyc); !os.IsNotExist(err) {
		t.Fatalf("stale bytecode kept: %v", err)
	}
	if code, stderr := runWorker(t, python, files.Script); code != 4 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
}

// TestInstallWorkerWithoutCache: a cache directory another user could write into is not
// used; the workers import the copy in the runtime directory.
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
	pkg := checkPackage(t, runDir, 0o600)
	if files.Script != filepath.Join(runDir, "worker.py") || files.Code[0] != filepath.Join(pkg, embeddedWorker().files[0].name) {
		t.Fatalf("installed %+v", files)
	}
	if _, err := os.Stat(filepath.Join(open, "herd", "worker")); err != nil {
		t.Fatalf("the cache directory should exist, unused: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(open, "herd", "worker")); len(entries) != 0 {
		t.Fatalf("written into an unsafe cache: %v", entries)
	}
	if code, stderr := runWorker(t, python, files.Script); code != 4 || !strings.Contains(stderr, `File "`+pkg+"/") {
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
		cmd := s.command([]string{"--bind", "127.0.0.1:0"}, nil)
		cmd.Stdout, cmd.Stderr = io.Discard, &stderr
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
	module := embeddedWorker().module
	shared := filepath.Join(tmp, sharedDirName(module))
	if s.WorkerScript != filepath.Join(shared, "worker.py") {
		t.Fatalf("started from %s, want %s/worker.py", s.WorkerScript, shared)
	}
	pkg := checkPackage(t, shared, 0o644)
	if code != 4 || !strings.Contains(stderr, "broken on purpose") || !strings.Contains(stderr, `File "`+pkg+"/") {
		t.Fatalf("exit %d, want 4 with a traceback through %s:\n%s", code, pkg, stderr)
	}
	for path, want := range map[string]os.FileMode{shared: 0o755 | os.ModeDir, pkg: 0o755 | os.ModeDir, s.WorkerScript: 0o644} {
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
