package spawn

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
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
	// Code are the files worker.py's code may run from, as its tracebacks name them.
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
	sum := sha256.Sum256(scripts.WorkerPy)
	module := "herd_worker_" + hex.EncodeToString(sum[:8])
	cache, err := cachedWorker(module)
	if err != nil {
		log.Debug().Err(err).Msg("worker code not cached: it is compiled at every start")
		if err := os.WriteFile(script, scripts.WorkerPy, 0o600); err != nil {
			return WorkerFiles{}, fmt.Errorf("write worker script: %w", err)
		}
		return WorkerFiles{Script: script, Code: []string{script}}, nil
	}
	fallback := filepath.Join(runDir, module+".py")
	if err := os.WriteFile(fallback, scripts.WorkerPy, 0o600); err != nil {
		return WorkerFiles{}, fmt.Errorf("write worker script: %w", err)
	}
	if err := os.WriteFile(script, workerStartup(filepath.Dir(cache), module), 0o600); err != nil {
		return WorkerFiles{}, fmt.Errorf("write worker script: %w", err)
	}
	return WorkerFiles{Script: script, Code: []string{cache, fallback, script}}, nil
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
	path := filepath.Join(dir, module+".py")
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, scripts.WorkerPy) {
		return path, nil // as written by an earlier start: its bytecode is still good
	}
	// Python checks bytecode against its source's size and mtime in whole seconds, which a
	// rewrite within the second need not change.
	stale, _ := filepath.Glob(filepath.Join(dir, "__pycache__", module+".*.pyc"))
	for _, pyc := range stale {
		if err := os.Remove(pyc); err != nil {
			return "", fmt.Errorf("remove stale worker bytecode: %w", err)
		}
	}
	if err := writeFileAtomic(dir, module+".py", scripts.WorkerPy); err != nil {
		return "", fmt.Errorf("cache the worker: %w", err)
	}
	return path, nil
}

// workerStartup is the start-up file that imports the worker's code as module from
// cacheDir, or from the copy next to it, and runs it.
func workerStartup(cacheDir, module string) []byte {
	dir, _ := json.Marshal(cacheDir) // a JSON string is a Python string literal
	return fmt.Appendf(nil, `"""herd worker: starts the worker's code (herd's scripts/worker.py) as the module
%[1]s from herd's cache, where Python keeps its bytecode, or from the copy next to this file."""

if __name__ == '__main__':     # not when multiprocessing's spawn imports the main module
    import os
    import sys

    _here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and sys.path[0] == _here:
        del sys.path[0]     # as the worker itself does: no app module comes from here
    sys.path[0:0] = [%[2]s, _here]
    # Its bytecode never goes stale: the module's name changes with its content.
    _write_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, False
    try:
        import %[1]s as _worker
    finally:
        sys.dont_write_bytecode = _write_bytecode
        del sys.path[0:2]
    _worker.run()
`, module, dir)
}
