package spawn

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Credential resolves --uid and --gid to the credential the workers run with; nil
// when neither is set. An unknown name is an error naming its key; then, only root may
// change the workers' user (the names are checked first, so that herd check run as another
// user still says whether they exist).
func Credential(uidName, gidName string) (*syscall.Credential, error) {
	if uidName == "" && gidName == "" {
		return nil, nil
	}
	cred := &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{}}
	if uidName != "" {
		u, err := lookup(uidName, user.Lookup, user.LookupId)
		if err != nil {
			return nil, fmt.Errorf("uid: no user %q: %w", uidName, err)
		}
		id, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		cred.Uid, cred.Gid = uint32(id), uint32(gid)
	}
	if gidName != "" {
		g, err := lookup(gidName, user.LookupGroup, user.LookupGroupId)
		if err != nil {
			return nil, fmt.Errorf("gid: no group %q: %w", gidName, err)
		}
		id, _ := strconv.ParseUint(g.Gid, 10, 32)
		cred.Gid = uint32(id)
	}
	if os.Geteuid() != 0 {
		key := "uid"
		if uidName == "" {
			key = "gid"
		}
		return nil, fmt.Errorf("%s: only root may run the workers as another user or group (herd runs as uid %d)", key, os.Geteuid())
	}
	// Groups empty: setgroups drops root's supplementary groups, leaving just cred.Gid.
	return cred, nil
}

// WithCredential makes the spawner run workers as cred. That user cannot enter the master's
// private runtime directory, nor as a rule herd's cache (root's is under /root, 0700): the
// workers then start from a copy of the worker's code it can read (sharedWorker). When that
// copy cannot be written, every start fails saying why.
func (s *Exec) WithCredential(cred *syscall.Credential) *Exec {
	if cred != nil {
		s.Credential = cred
		s.WorkerScript, s.err = sharedWorker()
	}
	return s
}

// sharedWorker writes the worker's code where any user can read it and only root can change
// it, and returns the start-up file that runs it. Only root runs workers as another user, so
// the master is root here.
//
// The place is herd-worker-HASH in the temporary directory (sharedDir), kept from one start to
// the next as herd's cache is, its name changing with the code. Python cannot write bytecode
// there as the workers' user: the worker's code is compiled at every start, as it was when it
// came on the command line.
func sharedWorker() (string, error) {
	code := embeddedWorker()
	dir, err := sharedDir(code.module)
	if err == nil {
		err = searchableByAll(dir)
	}
	if err == nil {
		err = installPackage(dir, code, 0o755, 0o644)
	}
	script := filepath.Join(dir, "worker.py")
	if startup := workerStartup(code.module); err == nil && !holds(script, startup, 0o644) {
		err = writeFileAtomic(dir, "worker.py", startup, 0o644)
	}
	if err != nil {
		return "", fmt.Errorf("share the worker's code with the workers' user: %w", err)
	}
	return script, nil
}

// sharedDirName is the name of the directory sharedWorker puts module in.
func sharedDirName(module string) string {
	return "herd-worker-" + strings.TrimPrefix(module, "herd_worker_")
}

// sharedDir makes the directory for module in the temporary directory, 0755, and returns it.
// When another user made one of that name first (anyone may in /tmp), it makes one of a
// random name instead, left behind at exit.
func sharedDir(module string) (string, error) {
	tmp := filepath.Clean(os.TempDir())
	if !filepath.IsAbs(tmp) {
		return "", fmt.Errorf("temporary directory %s: not an absolute path", tmp)
	}
	tmp, err := privateDir(tmp, 0)
	if err != nil {
		return "", fmt.Errorf("temporary directory: %w", err)
	}
	dir := filepath.Join(tmp, sharedDirName(module))
	if err = os.Mkdir(dir, 0o755); err == nil || errors.Is(err, fs.ErrExist) {
		var fi fs.FileInfo
		if fi, err = os.Lstat(dir); err == nil {
			err = checkDirOwner(dir, fi) // not a symbolic link, nor another user's
		}
	}
	if err != nil {
		if dir, err = os.MkdirTemp(tmp, "herd-worker-"); err != nil {
			return "", err
		}
	}
	return dir, os.Chmod(dir, 0o755) // whatever the umask
}

// searchableByAll fails when a user other than the owner cannot reach dir: a directory on the
// way is not searchable by all.
func searchableByAll(dir string) error {
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s is closed to other users (%v)", p, fi.Mode().Perm())
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// lookup finds a user or group by name, else by number, as --uid and --gid take either.
func lookup[T any](name string, byName, byID func(string) (T, error)) (T, error) {
	v, err := byName(name)
	if err != nil {
		v, err = byID(name)
	}
	return v, err
}
