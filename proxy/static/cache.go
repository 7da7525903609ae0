package static

import (
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The small-file cache: a file up to cacheFileMax is read once and kept in memory, and later
// requests for it cost one stat of its path instead of open, fstat, read and close (and Go's
// poller registration of the descriptor, refused by epoll for a regular file: one more call).
// On 1 KiB files that was a third of the master's time per request.
//
// A kept file is served only while the stat of its path shows the same file as when it was
// read: device, inode, size, modification and change times. The change time cannot be set
// by a user (touch -d, rsync and tar set the modification time only), so every write or
// replacement after the read shows. What the stat cannot show is a write within the clock
// tick of the file's change time (the kernel stamps times from a coarse clock): a file is
// kept only once its change time is racyWindow old, as git's index treats "racily clean"
// entries. A kept file whose path now leads elsewhere, or nowhere, is dropped, and the
// request takes the open path with all its checks (os.Root, escapes, special files).

// cacheFileMax: larger files go out by sendfile from the page cache; for these one write of
// head and body from memory is cheaper than open and close around a sendfile.
const cacheFileMax = 64 << 10

// racyWindow: a file changed more recently than this is served but not kept. It is far
// above the coarse clock's tick (1-10 ms) so that a clock adjusted by NTP does not matter.
var racyWindow = 2 * time.Second

// DefaultCacheBytes is the small-file cache's default budget per mount.
const DefaultCacheBytes = 8 << 20

// cachedFile is a kept file with its answer's header values, built once.
type cachedFile struct {
	body    []byte
	id      fileID
	modTime time.Time
	// The header values are shared by every answer: a handler (ServeContent included)
	// replaces a header's slice with Set, it never writes into it.
	contentType, contentLength, etag, lastModified []string
}

// fileID is what a stat must show for a kept file to be served.
type fileID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime unix.Timespec
}

func idOf(st *unix.Stat_t) fileID {
	return fileID{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim, ctime: st.Ctim}
}

// fileCache holds the kept files of one directory handle, by path relative to it.
type fileCache struct {
	mu     sync.RWMutex
	files  map[string]*cachedFile
	bytes  int64 // the sum of the kept bodies
	budget int64
}

func newFileCache(budget int64) *fileCache {
	if budget <= 0 {
		return nil
	}
	return &fileCache{files: make(map[string]*cachedFile), budget: budget}
}

func (c *fileCache) get(rel string) *cachedFile {
	c.mu.RLock()
	f := c.files[rel]
	c.mu.RUnlock()
	return f
}

// put keeps f under rel while the budget allows: a full cache keeps what it has (the files
// asked for first, in practice the site's common ones) and the rest is served from disk.
func (c *fileCache) put(rel string, f *cachedFile) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.files[rel]
	grow := int64(len(f.body))
	if old != nil {
		grow -= int64(len(old.body))
	}
	if c.bytes+grow > c.budget {
		return
	}
	c.files[rel] = f
	c.bytes += grow
}

// drop forgets rel if it is still f (a concurrent request may have kept a newer one).
func (c *fileCache) drop(rel string, f *cachedFile) {
	c.mu.Lock()
	if c.files[rel] == f {
		delete(c.files, rel)
		c.bytes -= int64(len(f.body))
	}
	c.mu.Unlock()
}

// Kept says how many files the handler keeps in memory, and their bytes.
func (h *Handler) Kept() (files int, bytes int64) {
	for _, m := range h.mounts {
		if rh := m.root.Load(); rh != nil && rh.cache != nil {
			rh.cache.mu.RLock()
			files += len(rh.cache.files)
			bytes += rh.cache.bytes
			rh.cache.mu.RUnlock()
		}
	}
	return files, bytes
}

// cached returns the kept file for rel if its path still shows the same file.
func (m *mount) cached(rh *rootHandle, rel string) *cachedFile {
	if rh == nil || rh.cache == nil {
		return nil
	}
	f := rh.cache.get(rel)
	if f == nil {
		return nil
	}
	var st unix.Stat_t
	if err := rh.stat(m, rel, &st); err != nil || idOf(&st) != f.id || st.Mode&unix.S_IFMT != unix.S_IFREG {
		rh.cache.drop(rel, f)
		return nil
	}
	return f
}

// stat follows symlinks as the open does. Without FollowSymlinks the open refuses a path
// that leaves the directory, and this stat does not check that again: a kept file is served
// only when the path leads to that very file (same device and inode, unchanged), which the
// open took from inside the directory, so no byte from outside can be served through it.
func (rh *rootHandle) stat(m *mount, rel string, st *unix.Stat_t) error {
	if m.follow {
		return unix.Stat(filepath.Join(m.dir, filepath.FromSlash(rel)), st)
	}
	rh.mu.RLock()
	defer rh.mu.RUnlock()
	if rh.dirFD < 0 {
		return os.ErrClosed
	}
	return unix.Fstatat(rh.dirFD, rel, st, 0)
}

// keep reads the opened file f into memory and keeps it when it is small, settled and fits.
// It returns nil when the file is served from disk instead; f stays open either way.
func (m *mount) keep(rh *rootHandle, rel string, f *os.File, info fs.FileInfo) *cachedFile {
	if rh == nil || rh.cache == nil || info.Size() > cacheFileMax {
		return nil
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	ctime := time.Unix(st.Ctim.Sec, st.Ctim.Nsec)
	if time.Since(ctime) < racyWindow {
		return nil
	}
	// ReadAt leaves the offset at 0 for the disk path, should this one give up.
	body := make([]byte, info.Size())
	if _, err := f.ReadAt(body, 0); err != nil {
		return nil // it shrank, or cannot be read: the disk path answers with what is there
	}
	if after, err := f.Stat(); err != nil || !sameID(after, st) {
		return nil // changed while read
	}
	cf := newCachedFile(rel, body, idFromSyscall(st), info)
	rh.cache.put(rel, cf)
	return cf
}

func sameID(info fs.FileInfo, st *syscall.Stat_t) bool {
	now, ok := info.Sys().(*syscall.Stat_t)
	return ok && idFromSyscall(now) == idFromSyscall(st)
}

func idFromSyscall(st *syscall.Stat_t) fileID {
	return fileID{dev: st.Dev, ino: st.Ino, size: st.Size,
		mtime: unix.Timespec{Sec: st.Mtim.Sec, Nsec: st.Mtim.Nsec},
		ctime: unix.Timespec{Sec: st.Ctim.Sec, Nsec: st.Ctim.Nsec}}
}

func newCachedFile(rel string, body []byte, id fileID, info fs.FileInfo) *cachedFile {
	modTime := info.ModTime()
	ctype := contentType(rel)
	if ctype == "" {
		ctype = http.DetectContentType(body[:min(len(body), 512)]) // as ServeContent sniffs
	}
	return &cachedFile{
		body:          body,
		id:            id,
		modTime:       modTime,
		contentType:   []string{ctype},
		contentLength: []string{strconv.Itoa(len(body))},
		etag:          []string{etag(info)},
		lastModified:  []string{modTime.UTC().Format(http.TimeFormat)},
	}
}
