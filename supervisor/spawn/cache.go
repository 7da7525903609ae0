package spawn

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// herd keeps what saves time at the next start in <user cache dir>/herd ($XDG_CACHE_HOME/herd
// or ~/.cache/herd): a note for each interpreter that passed ResolvePython's check, and the
// worker's code with the bytecode Python compiles from it. Nothing there is needed: without a
// usable cache directory herd does the work again at every start.

// errUnsafeCache is why a cache directory others could change is not used.
var errUnsafeCache = errors.New("another user could change it")

// cacheDir returns the directory sub of herd's cache, made if missing. It fails when there is
// no cache directory, or when anyone but this user or root could change what it names: the
// workers run code found there.
func cacheDir(sub string) (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("cache directory: %w", err)
	}
	dir := filepath.Join(base, "herd", sub)
	if !filepath.IsAbs(dir) {
		return "", fmt.Errorf("cache directory %s: not an absolute path", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("cache directory: %w", err)
	}
	if _, err := privateDir(filepath.Clean(dir), 0); err != nil {
		return "", fmt.Errorf("cache directory %s: %w", dir, err)
	}
	return dir, nil
}

// privateDir checks that only this user and root can change what the absolute, clean path
// names, and returns the path with its symbolic links resolved: every directory on the way
// belongs to one of them and is not writable by others (unless sticky, as /tmp is), and every
// symbolic link on the way leads to such a place. links counts the links followed so far.
func privateDir(path string, links int) (string, error) {
	if path == "/" {
		fi, err := os.Lstat(path)
		if err != nil {
			return "", err
		}
		return path, checkDirOwner(path, fi)
	}
	parent, err := privateDir(filepath.Dir(path), links)
	if err != nil {
		return "", err
	}
	p := filepath.Join(parent, filepath.Base(path))
	fi, err := os.Lstat(p)
	if err != nil {
		return "", err
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		return p, checkDirOwner(p, fi)
	}
	// Its parent is private, so the link itself cannot change: where it leads must be too.
	if links >= 40 {
		return "", fmt.Errorf("%s: too many levels of symbolic links", p)
	}
	target, err := os.Readlink(p)
	if err != nil {
		return "", err
	}
	if slices.Contains(strings.Split(target, "/"), "..") {
		// The kernel resolves ".." after the links before it, filepath.Join before: refuse
		// rather than check another path than the one used.
		return "", fmt.Errorf("%s: a symbolic link through \"..\"", p)
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(parent, target)
	}
	return privateDir(filepath.Clean(target), links+1)
}

func checkDirOwner(path string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return fmt.Errorf("%s: not a directory", path)
	case !ok:
		return fmt.Errorf("%s: no owner known", path)
	case st.Uid != 0 && int(st.Uid) != os.Geteuid():
		return fmt.Errorf("%s belongs to uid %d: %w", path, st.Uid, errUnsafeCache)
	case fi.Mode().Perm()&0o022 != 0 && fi.Mode()&fs.ModeSticky == 0:
		return fmt.Errorf("%s is writable by others (%v): %w", path, fi.Mode().Perm(), errUnsafeCache)
	}
	return nil
}

// writeFileAtomic gives dir/name the content data and the mode perm at once: a reader sees
// the old file or the new one, never a part.
func writeFileAtomic(dir, name string, data []byte, perm fs.FileMode) error {
	f, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm) // CreateTemp's 0600, whatever the umask: perm exactly
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, name))
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
