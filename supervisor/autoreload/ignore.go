package autoreload

import (
	"os"
	"path/filepath"
	"strings"
)

// ignoredDirs are never walked: caches, version control, dependency trees and tool state,
// where changes are not the app's code and which can hold far more files than the app.
var ignoredDirs = map[string]bool{
	"__pycache__": true, ".git": true, ".hg": true, ".svn": true, ".venv": true,
	"node_modules": true, ".tox": true, ".nox": true, ".mypy_cache": true, ".pytest_cache": true,
	".ruff_cache": true, ".hypothesis": true, ".idea": true, ".vscode": true, "site-packages": true,
}

func ignoredDirName(name string) bool { return ignoredDirs[name] }

// isVirtualenv: every virtualenv (venv, virtualenv, uv, poetry) has a pyvenv.cfg at its top,
// whatever the directory is called.
func isVirtualenv(dir string) bool {
	_, err := os.Lstat(filepath.Join(dir, "pyvenv.cfg"))
	return err == nil
}

// IgnoredFile says whether a file name is compiled bytecode or an editor's temporary,
// swap or backup file: writing one is never a change of the app.
func IgnoredFile(name string) bool {
	switch {
	case name == "4913": // vim writes and deletes it to probe whether the directory is writable
		return true
	case name == ".DS_Store":
		return true
	case strings.HasPrefix(name, ".#"): // emacs lock files
		return true
	case strings.HasPrefix(name, "#") && strings.HasSuffix(name, "#"): // emacs auto-save
		return true
	case strings.HasSuffix(name, "~"): // emacs, vim and gedit backups
		return true
	}
	for _, suffix := range ignoredSuffixes {
		if strings.HasSuffix(name, suffix) {
			return true
		}
	}
	return false
}

var ignoredSuffixes = []string{
	".pyc", ".pyo",
	".swp", ".swo", ".swx", ".swpx", // vim swap files
	".kate-swp",
	"___jb_tmp___", "___jb_old___", // JetBrains "safe write"
	".tmp",
}
