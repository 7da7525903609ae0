package spawn

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/herd-server/herd/scripts"
)

// WorkerFiles are the files a run's workers are started from.
type WorkerFiles struct {
	// Script is what the interpreter runs: runDir/worker.py.
	Script string
	// Code are the files worker.py's code may run from, as its tracebacks name them: the
	// copies InstallWorker writes, and the one workers run as another user start from
	// (sharedWorker).
	Code []string
}

// InstallWorker writes the worker's code where this run's workers start it from.
//
// Python compiles a script at every start (about 10 ms for worker.py here, in every worker,
// before it can import the app), but keeps an imported module's bytecode in __pycache__
// next to it until the module changes. So, when herd's cache is usable, worker.py in runDir
// is a start-up file that imports the worker's code as a module from the cache, named by
// its content: its bytecode is compiled once per version of herd and Python. A copy in
// runDir is found next when the cache was emptied under a running herd. Without a cache,
// runDir/worker.py is the worker itself, compiled at every start.
func InstallWorker(runDir string, log zerolog.Logger) (WorkerFiles, error) {
	script := filepath.Join(runDir, "worker.py")
	module := workerModule()
	shared := filepath.Join(os.TempDir(), sharedDirName(module), module+".py")
	cache, err := cachedWorker(module)
	if err != nil {
		log.Debug().Err(err).Msg("worker code not cached: it is compiled at every start")
		if err := os.WriteFile(script, scripts.WorkerPy, 0o600); err != nil {
			return WorkerFiles{}, fmt.Errorf("write worker script: %w", err)
		}
		return WorkerFiles{Script: script, Code: []string{script, shared}}, nil
	}
	fallback := filepath.Join(runDir, module+".py")
	if err := os.WriteFile(fallback, scripts.WorkerPy, 0o600); err != nil {
		return WorkerFiles{}, fmt.Errorf("write worker script: %w", err)
	}
	if err := os.WriteFile(script, workerStartup(module, filepath.Dir(cache)), 0o600); err != nil {
		return WorkerFiles{}, fmt.Errorf("write worker script: %w", err)
	}
	return WorkerFiles{Script: script, Code: []string{cache, fallback, script, shared}}, nil
}

// workerModule is the name the worker's code is imported under: named by its content, so
// that the bytecode Python keeps for it is never taken for another version's.
func workerModule() string {
	sum := sha256.Sum256(scripts.WorkerPy)
	return "herd_worker_" + hex.EncodeToString(sum[:8])
}

// cachedWorker makes sure herd's cache holds the worker's code as module.py, and returns
// its path.
func cachedWorker(module string) (string, error) {
	dir, err := cacheDir("worker")
	if err != nil {
		return "", err
	}
	if !utf8.ValidString(dir) {
		// The start-up file names it in a Python string literal.
		return "", fmt.Errorf("cache directory %q: not UTF-8", dir)
	}
	if err := installModule(dir, module, 0o600); err != nil {
		return "", fmt.Errorf("cache the worker: %w", err)
	}
	return filepath.Join(dir, module+".py"), nil
}

// installModule makes sure dir holds the worker's code as module.py with the mode perm.
func installModule(dir, module string, perm fs.FileMode) error {
	if holds(filepath.Join(dir, module+".py"), scripts.WorkerPy, perm) {
		return nil // as written by an earlier start: its bytecode is still good
	}
	// Python checks bytecode against its source's size and mtime in whole seconds, which a
	// rewrite within the second need not change.
	stale, _ := filepath.Glob(filepath.Join(dir, "__pycache__", module+".*.pyc"))
	for _, pyc := range stale {
		if err := os.Remove(pyc); err != nil {
			return fmt.Errorf("remove stale worker bytecode: %w", err)
		}
	}
	return writeFileAtomic(dir, module+".py", scripts.WorkerPy, perm)
}

// holds tells whether the file at path has the content data and the mode perm.
func holds(path string, data []byte, perm fs.FileMode) bool {
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != perm || fi.Size() != int64(len(data)) {
		return false
	}
	old, err := os.ReadFile(path)
	return err == nil && bytes.Equal(old, data)
}

// workerStartup is the start-up file that imports the worker's code as module from the first
// of dirs that holds it, else from the copy next to it, and runs it.
func workerStartup(module string, dirs ...string) []byte {
	path, _ := json.Marshal(append([]string{}, dirs...)) // a JSON list of strings is a Python list literal
	return fmt.Appendf(nil, `"""herd worker: runs the worker's code (herd's scripts/worker.py), imported as the module
%[1]s from the directories named below or from this file's: an imported
module's bytecode is kept, where a script's is compiled at every start."""

if __name__ == '__main__':     # not when multiprocessing's spawn imports the main module
    import os
    import sys

    _here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and sys.path[0] == _here:
        del sys.path[0]     # as the worker itself does: no app module comes from here
    _dirs = %[2]s + [_here]
    sys.path[0:0] = _dirs
    # Its bytecode never goes stale: the module's name changes with its content.
    _write_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, False
    try:
        import %[1]s as _worker
    finally:
        sys.dont_write_bytecode = _write_bytecode
        del sys.path[0:len(_dirs)]
    _worker.run()
`, module, path)
}
