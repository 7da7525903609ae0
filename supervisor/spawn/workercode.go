package spawn

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sync"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/herd-server/herd/scripts"
)

// WorkerFiles are the files a run's workers are started from.
type WorkerFiles struct {
	// Script is what the interpreter runs: runDir/worker.py.
	Script string
	// Code are the files the worker's code may run from, as its tracebacks name them: every
	// file of each copy of its package (InstallWorker's, and the one workers run as another
	// user start from: sharedWorker), and the start-up files.
	Code []string
}

// InstallWorker writes the worker's code where this run's workers start it from.
//
// Python compiles a script at every start, but keeps an imported module's bytecode in
// __pycache__ next to it until the module changes (compiling the worker takes about 10 ms
// here, in every worker, before it can import the app). So runDir/worker.py is a small
// start-up file that imports the worker's package, named by its content, from herd's cache:
// its bytecode is compiled once per version of herd and Python. A copy in runDir is found
// next when the cache was emptied under a running herd, and is the only one when there is
// no usable cache: its bytecode is then compiled once per run.
func InstallWorker(runDir string, log zerolog.Logger) (WorkerFiles, error) {
	code := embeddedWorker()
	script := filepath.Join(runDir, "worker.py")
	var dirs []string
	if cache, err := cachedWorker(code); err != nil {
		log.Debug().Err(err).Msg("worker code not cached: it is compiled once per run")
	} else {
		dirs = append(dirs, cache)
	}
	if err := installPackage(runDir, code, 0o700, 0o600); err != nil {
		return WorkerFiles{}, fmt.Errorf("write the worker's code: %w", err)
	}
	if err := os.WriteFile(script, workerStartup(code.module, dirs...), 0o600); err != nil {
		return WorkerFiles{}, fmt.Errorf("write the worker's start-up file: %w", err)
	}
	files := WorkerFiles{Script: script}
	shared := filepath.Join(os.TempDir(), sharedDirName(code.module))
	for _, dir := range append(dirs, runDir, shared) {
		for _, f := range code.files {
			files.Code = append(files.Code, filepath.Join(dir, code.module, f.name))
		}
	}
	files.Code = append(files.Code, script, filepath.Join(shared, "worker.py"))
	return files, nil
}

// workerCode is the worker's package as herd embeds it (scripts/herd_worker).
type workerCode struct {
	// module is the name it is imported under: herd_worker_ and the start of a hash of its
	// files, so that the bytecode Python keeps for it is never taken for another version's.
	module string
	files  []workerFile // sorted by name
}

type workerFile struct {
	name string
	data []byte
}

// embeddedWorker reads the worker's package out of the binary, once.
var embeddedWorker = sync.OnceValue(func() workerCode {
	entries, err := scripts.Worker.ReadDir(scripts.WorkerPackage)
	if err != nil {
		panic(err) // embedded: it is there
	}
	var code workerCode
	h := sha256.New()
	for _, e := range entries { // ReadDir sorts them by name
		data, err := scripts.Worker.ReadFile(path.Join(scripts.WorkerPackage, e.Name()))
		if err != nil {
			panic(err)
		}
		code.files = append(code.files, workerFile{e.Name(), data})
		// Each file's name and size before its content: no two packages hash alike.
		fmt.Fprintf(h, "%s\x00%d\x00", e.Name(), len(data))
		h.Write(data)
	}
	code.module = "herd_worker_" + hex.EncodeToString(h.Sum(nil)[:8])
	return code
})

// cachedWorker makes sure herd's cache holds the worker's package, and returns the cache
// directory, the one to put on sys.path.
func cachedWorker(code workerCode) (string, error) {
	dir, err := cacheDir("worker")
	if err != nil {
		return "", err
	}
	if !utf8.ValidString(dir) {
		// The start-up file names it in a Python string literal.
		return "", fmt.Errorf("cache directory %q: not UTF-8", dir)
	}
	if err := installPackage(dir, code, 0o700, 0o600); err != nil {
		return "", fmt.Errorf("cache the worker: %w", err)
	}
	return dir, nil
}

// installPackage makes sure dir holds the worker's package, the directory with the mode
// dirPerm and its files filePerm.
func installPackage(dir string, code workerCode, dirPerm, filePerm fs.FileMode) error {
	pkg := filepath.Join(dir, code.module)
	if err := os.Mkdir(pkg, dirPerm); err != nil && !os.IsExist(err) {
		return err
	}
	if err := os.Chmod(pkg, dirPerm); err != nil { // whatever the umask
		return err
	}
	var changed []workerFile
	for _, f := range code.files {
		if !holds(filepath.Join(pkg, f.name), f.data, filePerm) {
			changed = append(changed, f)
		}
	}
	if len(changed) == 0 {
		return nil // as written by an earlier start: its bytecode is still good
	}
	// Python checks bytecode against its source's size and mtime in whole seconds, which a
	// rewrite within the second need not change.
	stale, _ := filepath.Glob(filepath.Join(pkg, "__pycache__", "*.pyc"))
	for _, pyc := range stale {
		if err := os.Remove(pyc); err != nil {
			return fmt.Errorf("remove stale worker bytecode: %w", err)
		}
	}
	for _, f := range changed {
		if err := writeFileAtomic(pkg, f.name, f.data, filePerm); err != nil {
			return err
		}
	}
	return nil
}

// holds tells whether file has the content data and the mode perm.
func holds(file string, data []byte, perm fs.FileMode) bool {
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != perm || fi.Size() != int64(len(data)) {
		return false
	}
	old, err := os.ReadFile(file)
	return err == nil && bytes.Equal(old, data)
}

// workerStartup is the start-up file that imports the worker's package module from the first
// of dirs that holds it, else from its own directory, and runs it.
func workerStartup(module string, dirs ...string) []byte {
	list, _ := json.Marshal(append([]string{}, dirs...)) // a JSON list of strings is a Python list literal
	return fmt.Appendf(nil, `"""herd worker: runs the worker (herd's scripts/herd_worker, docs/protocol.md), imported
as the package %[1]s from the directories named below or from this file's:
an imported module's bytecode is kept, where a script's is compiled at every start."""

if __name__ == '__main__':     # not when multiprocessing's spawn imports the main module
    import os
    import sys

    _here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and sys.path[0] == _here:
        del sys.path[0]     # no app module comes from here
    _dirs = %[2]s + [_here]
    sys.path[0:0] = _dirs
    # Its bytecode never goes stale: the package's name changes with its content.
    _write_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, False
    try:
        import %[1]s.boot as _boot
    finally:
        sys.dont_write_bytecode = _write_bytecode
        del sys.path[0:len(_dirs)]
    _boot.run()
`, module, list)
}
