package autoreload

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/fsnotify/fsnotify"
)

type fsEvent = fsnotify.Event

// notifier keeps one inotify watch on every watched directory. inotify is not recursive:
// directories created later are added as their creation is seen, and the files already in
// them by then (mkdir -p a/b && echo > a/b/x.py races the watch) count as changed.
type notifier struct {
	fs    *fsnotify.Watcher
	roots []Root
	dirs  map[string]bool
	limit int // WatchLimit; 0 means the kernel's
}

// limitError is the inotify watch limit (ENOSPC from inotify_add_watch) being reached.
type limitError struct {
	dir     string
	watches int
	err     error
}

func (e *limitError) Error() string {
	return fmt.Sprintf("watch %s: inotify watch limit reached with %d directories watched: %v", e.dir, e.watches, e.err)
}
func (e *limitError) Unwrap() error { return e.err }

func isWatchLimit(err error) bool { return errors.Is(err, syscall.ENOSPC) }

func newNotifier(roots []Root, limit int) (*notifier, error) {
	w, err := fsnotify.NewBufferedWatcher(4096)
	if err != nil {
		return nil, fmt.Errorf("watch: start inotify: %w", err)
	}
	n := &notifier{fs: w, roots: roots, dirs: make(map[string]bool), limit: limit}
	for _, r := range roots {
		if _, err := n.addTree(r.Dir, false); err != nil {
			_ = n.close()
			return nil, err
		}
	}
	return n, nil
}

func (n *notifier) events() <-chan fsnotify.Event { return n.fs.Events }
func (n *notifier) errors() <-chan error          { return n.fs.Errors }
func (n *notifier) watches() int                  { return len(n.dirs) }
func (n *notifier) close() error                  { return n.fs.Close() }

// handle turns one inotify event into the changed paths that count. A new directory gets
// its watches; the error is a watch that could not be added.
func (n *notifier) handle(ev fsnotify.Event) ([]string, error) {
	var changed []string
	if wanted(n.roots, ev.Name) {
		changed = append(changed, ev.Name)
	}
	switch {
	case ev.Has(fsnotify.Create):
		fi, err := os.Lstat(ev.Name)
		if err != nil || !fi.IsDir() {
			if filepath.Base(ev.Name) == "pyvenv.cfg" {
				n.forget(filepath.Dir(ev.Name)) // a virtualenv is being made here
			}
			return changed, nil
		}
		found, err := n.addTree(ev.Name, true)
		return append(changed, found...), err
	case (ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename)) && n.dirs[ev.Name]:
		n.forget(ev.Name)
	}
	return changed, nil
}

// addTree adds watches for dir and, for recursive roots, the directories under it. With
// report, it returns the wanted files found there.
func (n *notifier) addTree(dir string, report bool) ([]string, error) {
	var found []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != dir && errors.Is(err, fs.ErrNotExist) {
				return nil // gone again already
			}
			return err
		}
		if !d.IsDir() {
			if report && wanted(n.roots, p) {
				found = append(found, p)
			}
			return nil
		}
		if !covered(n.roots, p) || p != dir && isVirtualenv(p) {
			return fs.SkipDir
		}
		if err := n.add(p); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fs.SkipDir
			}
			return err
		}
		if !recursiveAt(n.roots, p) {
			return fs.SkipDir
		}
		return nil
	})
	if err != nil && errors.Is(err, fs.ErrNotExist) && report {
		return found, nil // the new directory vanished before we looked
	}
	return found, err
}

func (n *notifier) add(dir string) error {
	if n.dirs[dir] {
		return nil
	}
	if n.limit > 0 && len(n.dirs) >= n.limit {
		return &limitError{dir: dir, watches: len(n.dirs), err: syscall.ENOSPC}
	}
	if err := n.fs.Add(dir); err != nil {
		if isWatchLimit(err) {
			return &limitError{dir: dir, watches: len(n.dirs), err: err}
		}
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	n.dirs[dir] = true
	return nil
}

// forget drops the watches of a directory that was removed or renamed, and of those under
// it; the kernel has dropped or will drop them too.
func (n *notifier) forget(dir string) {
	for d := range n.dirs {
		if d == dir || isUnder(d, dir) {
			_ = n.fs.Remove(d)
			delete(n.dirs, d)
		}
	}
}

func isUnder(p, dir string) bool {
	_, ok := relInside(dir, p)
	return ok
}

func wanted(roots []Root, p string) bool {
	for _, r := range roots {
		if r.wants(p) {
			return true
		}
	}
	return false
}

func covered(roots []Root, dir string) bool {
	for _, r := range roots {
		if r.covers(dir) {
			return true
		}
	}
	return false
}

// recursiveAt says whether some root wants the subdirectories of dir watched.
func recursiveAt(roots []Root, dir string) bool {
	for _, r := range roots {
		if r.Recursive && r.covers(dir) {
			return true
		}
	}
	return false
}
