// Package static serves files from directories under URL prefixes (`--static /PREFIX=DIR`,
// uWSGI's static-map) in the master, before a request reaches a Python worker.
//
// What it serves, and what it leaves to the app:
//
//   - GET and HEAD of a regular file under a mounted prefix: served here with sendfile,
//     ETag and Last-Modified, conditional requests (304, 412), Range (206, 416),
//     and a precompressed FILE.br or FILE.gz sibling when the client accepts it.
//   - A path that does not name a regular file (missing, or a directory), and every other
//     method: passed on to the app unchanged, as uWSGI's static-map does. No directory
//     listing, no index.html (uWSGI's static-index is not taken).
//   - A path that tries to leave DIR: a ".." segment (also written %2e%2e) or a NUL: 400;
//     a symlink that resolves outside DIR: 404, unless FollowSymlinks is set.
//
// It must never open a file outside the mounted directories (without FollowSymlinks), never
// block on a special file, and never wrap the ResponseWriter in a way that hides the
// connection's ReadFrom: net/http hands a file body to the kernel through it (sendfile).
// It imports nothing of herd's.
package static

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Dir is one --static mount: URL paths under Prefix map to files under Path. When Path is a
// regular file (uWSGI's `static-map = /favicon.ico=/srv/favicon.ico`), Prefix names exactly
// that file.
type Dir struct {
	Prefix string // begins with "/", no trailing "/" (except the root "/" itself)
	Path   string // absolute
}

// Options tune a Handler.
type Options struct {
	// FollowSymlinks serves symlinks that resolve outside their mounted directory (a
	// deployment that links shared assets in). Paths are still checked for "..".
	FollowSymlinks bool
	// OnServed, when set, is called after each response the handler gave itself (not for
	// the requests passed on), for the access log and the metrics.
	OnServed func(r *http.Request, start time.Time, status int, bytes int64)
	// Refused, when set, hears why a path was refused (400, or 404 for an escape), for a
	// debug log line.
	Refused func(r *http.Request, why error)
	// CacheBytes is each mount's budget for files kept in memory (see cache.go); 0 keeps
	// none.
	CacheBytes int64
	// Files, when set, counts the descriptors an answer may hold while it is sent (the
	// file and a precompressed sibling: two) against a bound, the master's share of its
	// open-file limit; without room the request gets 503 (Refused hears ErrNoDescriptor).
	Files interface {
		Take(n int) bool
		Give(n int)
	}
}

// ErrNoDescriptor: the Files bound left no descriptor to open a file with.
var ErrNoDescriptor = errors.New("no file descriptor to spare")

// filesPerAnswer is what an answer takes of Files: the file and a precompressed sibling.
const filesPerAnswer = 2

// Handler serves the mounted files and passes every other request to Next.
type Handler struct {
	next   http.Handler
	opts   Options
	mounts []*mount // longest prefix first, so /static/img wins over /static
}

// New mounts dirs in front of next. Close releases the directories.
func New(dirs []Dir, opts Options, next http.Handler) (*Handler, error) {
	h := &Handler{next: next, opts: opts}
	for _, d := range dirs {
		m, err := newMount(d, opts.FollowSymlinks, opts.CacheBytes)
		if err != nil {
			_ = h.Close()
			return nil, err
		}
		h.mounts = append(h.mounts, m)
	}
	slices.SortStableFunc(h.mounts, func(a, b *mount) int { return len(b.prefix) - len(a.prefix) })
	return h, nil
}

// Close releases the directory handles.
func (h *Handler) Close() error {
	var errs []error
	for _, m := range h.mounts {
		errs = append(errs, m.close())
	}
	return errors.Join(errs...)
}

// Errors a request can be refused with.
var (
	errDotSegment = errors.New("the path has a . or .. segment")
	errNUL        = errors.New("the path has a NUL byte")
	errEscape     = errors.New("the path resolves outside the static directory")
	errSpecial    = errors.New("not a regular file")
)

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m, rel, ok := h.match(r.URL.Path)
	if !ok || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		h.next.ServeHTTP(w, r)
		return
	}
	start := time.Now()
	if why := checkPath(rel); why != nil {
		h.refuse(w, r, start, http.StatusBadRequest, why)
		return
	}
	if h.opts.Files != nil {
		if !h.opts.Files.Take(filesPerAnswer) {
			w.Header().Set("Retry-After", "1")
			h.refuse(w, r, start, http.StatusServiceUnavailable, ErrNoDescriptor)
			return
		}
		defer h.opts.Files.Give(filesPerAnswer)
	}
	src, err := m.get(rel)
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR), errors.Is(err, errIsDir):
		// As uWSGI's static-map: what is not a file here may be a route of the app.
		h.next.ServeHTTP(w, r)
		return
	case errors.Is(err, fs.ErrPermission):
		h.refuse(w, r, start, http.StatusForbidden, err)
		return
	default: // an escaping symlink, a special file
		h.refuse(w, r, start, http.StatusNotFound, err)
		return
	}
	defer src.close()
	rec := w
	var counted *recorder
	if h.opts.OnServed != nil {
		counted = getRecorder(w)
		defer putRecorder(counted)
		rec = counted
	}
	h.serveFile(rec, r, m, rel, src)
	if counted != nil {
		h.opts.OnServed(r, start, counted.status, counted.bytes)
	}
}

// match finds the mount of urlPath and the path relative to its directory.
func (h *Handler) match(urlPath string) (*mount, string, bool) {
	for _, m := range h.mounts {
		rest, ok := strings.CutPrefix(urlPath, m.prefix)
		if !ok {
			continue
		}
		if m.file != "" {
			if rest == "" {
				return m, m.file, true
			}
			continue
		}
		switch {
		case m.prefix == "/":
			return m, strings.TrimLeft(urlPath, "/"), true
		case rest == "":
			return m, "", true
		case rest[0] == '/':
			return m, strings.TrimLeft(rest, "/"), true
		}
		// "/staticfoo" is not under "/static" (uWSGI's plain string prefix would say it is).
	}
	return nil, "", false
}

// checkPath refuses what could leave the directory by its spelling: Go's server decodes
// %2e%2e to ".." and %00 to NUL but does not clean the path.
func checkPath(rel string) error {
	if strings.IndexByte(rel, 0) >= 0 {
		return errNUL
	}
	for seg := range strings.SplitSeq(rel, "/") {
		if seg == ".." || seg == "." {
			return errDotSegment
		}
	}
	return nil
}

func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, start time.Time, status int, why error) {
	if h.opts.Refused != nil {
		h.opts.Refused(r, why)
	}
	http.Error(w, http.StatusText(status), status)
	if h.opts.OnServed != nil {
		h.opts.OnServed(r, start, status, int64(len(http.StatusText(status))+1))
	}
}

// serveFile answers with src (or a precompressed sibling). A kept file with no condition or
// range asked goes out here; everything else through http.ServeContent, which implements the
// conditional requests, Range (multipart for several ranges) and HEAD; its full-file copy is
// io.CopyN into the ResponseWriter, which net/http turns into sendfile.
func (h *Handler) serveFile(w http.ResponseWriter, r *http.Request, m *mount, rel string, src source) {
	hdr := w.Header()
	variant := false
	if accepted := acceptedEncodings(r.Header.Get("Accept-Encoding")); len(accepted) > 0 {
		// A client that accepts no coding gets the file without Vary, and no probe for
		// siblings is made for it (as nginx's gzip_static): caching that answer for every
		// client is harmless, since every client takes the identity coding.
		if e, vsrc, ok := m.openVariant(rel, accepted); ok {
			defer vsrc.close()
			hdr.Set("Content-Encoding", e.name)
			src, variant = vsrc, true
			hdr.Set("Vary", "Accept-Encoding")
		} else if m.hasVariant(rel, accepted) {
			hdr.Set("Vary", "Accept-Encoding") // other clients get a sibling this one refused
		}
	}
	ctype := contentType(rel)
	switch {
	case ctype == "" && variant:
		hdr.Set("Content-Type", "application/octet-stream") // sniffing would read the compressed bytes
	case ctype != "":
		hdr.Set("Content-Type", ctype)
	}
	if rng := r.Header.Get("Range"); rng != "" && !strings.HasPrefix(rng, "bytes=") {
		// A range unit other than bytes must be ignored (RFC 9110 14.2); ServeContent
		// would answer 416.
		r.Header.Del("Range")
	}
	if kf := src.kept; kf != nil {
		hdr["Etag"] = kf.etag
		if !conditional(r.Header) {
			// What ServeContent answers to a plain GET or HEAD, without its parsing.
			if ctype == "" && !variant {
				hdr["Content-Type"] = kf.contentType // sniffed when it was kept
			}
			hdr["Accept-Ranges"] = acceptRangesBytes
			hdr["Content-Length"] = kf.contentLength
			hdr["Last-Modified"] = kf.lastModified
			w.WriteHeader(http.StatusOK)
			if r.Method != http.MethodHead {
				_, _ = w.Write(kf.body)
			}
			return
		}
		http.ServeContent(writeOnlyResponse{w}, r, rel, kf.modTime, bytes.NewReader(kf.body))
		return
	}
	f, st := src.f, src.st
	hdr.Set("ETag", etag(st))
	if st.Size() <= smallFile {
		serveSmall(w, r, rel, f, st)
		return
	}
	http.ServeContent(w, r, rel, st.ModTime(), &seekSaver{File: f, size: st.Size()})
}

var acceptRangesBytes = []string{"bytes"}

// conditional says whether the request asks for a range or a condition: the headers
// ServeContent acts on.
func conditional(h http.Header) bool {
	for _, k := range [...]string{"Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since"} {
		if _, ok := h[k]; ok {
			return true
		}
	}
	return false
}

// smallFile: files up to this size are read into memory with one read and go out with the
// headers in one write (the response's buffer holds both). The sendfile path costs two more
// system calls on these: net/http writes the first 512 bytes with the headers, then sendfile
// sends the rest.
const smallFile = 2 << 10

var smallBuffers = sync.Pool{New: func() any { b := make([]byte, smallFile); return &b }}

func serveSmall(w http.ResponseWriter, r *http.Request, rel string, f *os.File, st fs.FileInfo) {
	bp := smallBuffers.Get().(*[]byte)
	defer smallBuffers.Put(bp)
	n, err := io.ReadFull(f, (*bp)[:st.Size()])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		http.Error(w, "cannot read the file", http.StatusInternalServerError)
		return
	}
	// The file shrank under us: what was read is the body, with its length. Hiding the
	// writer's ReadFrom keeps the body in the response's buffer, out in one write.
	http.ServeContent(writeOnlyResponse{w}, r, rel, st.ModTime(), bytes.NewReader((*bp)[:n]))
}

// writeOnlyResponse is a ResponseWriter without ReadFrom.
type writeOnlyResponse struct{ http.ResponseWriter }

// seekSaver spares http.ServeContent's two lseek calls per request: it learns the size with
// Seek(0, io.SeekEnd) and goes back with Seek(0, io.SeekStart), both answered here while
// the file's real offset is still 0. Every other Seek is real, so sendfile (which reads the
// descriptor's own offset) starts where ServeContent expects. The embedded *os.File keeps
// SyscallConn, which net's sendfile looks for.
type seekSaver struct {
	*os.File
	size    int64
	realPos int64 // the descriptor's offset
	atEnd   bool  // a Seek(0, io.SeekEnd) was answered without moving the descriptor
}

func (s *seekSaver) Seek(offset int64, whence int) (int64, error) {
	switch {
	case offset == 0 && whence == io.SeekEnd:
		s.atEnd = true
		return s.size, nil
	case offset == 0 && whence == io.SeekStart && s.realPos == 0:
		s.atEnd = false
		return 0, nil
	}
	if s.atEnd && whence == io.SeekCurrent {
		offset, whence = s.size+offset, io.SeekStart
	}
	s.atEnd = false
	pos, err := s.File.Seek(offset, whence)
	if err == nil {
		s.realPos = pos
	}
	return pos, err
}

func (s *seekSaver) Read(p []byte) (int, error) {
	if s.atEnd {
		return 0, io.EOF
	}
	n, err := s.File.Read(p)
	s.realPos += int64(n)
	return n, err
}

// etag is nginx's: the modification time and the size in hex. A precompressed sibling has
// its own size and time, hence its own tag, as a Range or If-Range on it needs.
func etag(st fs.FileInfo) string {
	return fmt.Sprintf(`"%x-%x"`, st.ModTime().Unix(), st.Size())
}

// errIsDir says the path is a directory: passed on like a missing file.
var errIsDir = errors.New("is a directory")

// mount is one Dir with its open directory handle. The handle is renewed when the
// directory's path comes to name another directory (a deployment that flips a "current"
// symlink), checked at most once per rootCheckInterval.
type mount struct {
	prefix string
	dir    string // the directory (for a file mount: its parent)
	file   string // for a file mount: the file's name, else ""
	follow bool

	cacheBytes int64
	root       atomic.Pointer[rootHandle]
	nextCheck  atomic.Int64 // unix nanoseconds
	renewing   sync.Mutex
}

// rootHandle is an open directory and what it was opened as, with the files kept from it.
// Under FollowSymlinks it has no root, only the cache.
type rootHandle struct {
	root *os.Root
	st   fs.FileInfo

	cache *fileCache // nil: none kept
	mu    sync.RWMutex
	dirFD int // the directory again, for the cache's stat (os.Root shows no descriptor); -1 once closed
}

const rootCheckInterval = time.Second

func newMount(d Dir, follow bool, cacheBytes int64) (*mount, error) {
	m := &mount{prefix: d.Prefix, dir: d.Path, follow: follow, cacheBytes: cacheBytes}
	st, err := os.Stat(d.Path)
	if err != nil {
		return nil, fmt.Errorf("static %s: %w", d.Prefix, err)
	}
	if !st.IsDir() {
		m.dir, m.file = filepath.Dir(d.Path), filepath.Base(d.Path)
	}
	if follow {
		m.root.Store(&rootHandle{cache: newFileCache(cacheBytes), dirFD: -1})
		return m, nil
	}
	rh, err := openRoot(m.dir, cacheBytes)
	if err != nil {
		return nil, fmt.Errorf("static %s: %w", d.Prefix, err)
	}
	m.root.Store(rh)
	m.nextCheck.Store(time.Now().Add(rootCheckInterval).UnixNano())
	return m, nil
}

func openRoot(dir string, cacheBytes int64) (*rootHandle, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	st, err := root.Stat(".")
	if err != nil {
		_ = root.Close()
		return nil, err
	}
	rh := &rootHandle{root: root, st: st, dirFD: -1}
	if cacheBytes > 0 {
		// The cache's stat needs a descriptor of the same directory: if dir was flipped
		// between the two opens, this handle keeps nothing.
		fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		var fst unix.Stat_t
		if err == nil && unix.Fstat(fd, &fst) == nil && sameDir(st, &fst) {
			rh.dirFD, rh.cache = fd, newFileCache(cacheBytes)
		} else if err == nil {
			_ = unix.Close(fd)
		}
	}
	return rh, nil
}

func sameDir(info fs.FileInfo, st *unix.Stat_t) bool {
	sys, ok := info.Sys().(*syscall.Stat_t)
	return ok && sys.Dev == st.Dev && sys.Ino == st.Ino
}

func (rh *rootHandle) close() error {
	rh.mu.Lock()
	if rh.dirFD >= 0 {
		_ = unix.Close(rh.dirFD)
		rh.dirFD = -1
	}
	rh.mu.Unlock()
	if rh.root == nil {
		return nil
	}
	return rh.root.Close()
}

func (m *mount) close() error {
	if rh := m.root.Swap(nil); rh != nil {
		return rh.close()
	}
	return nil
}

// currentRoot is the directory handle, renewed if the path now names another directory.
func (m *mount) currentRoot() *rootHandle {
	rh := m.root.Load()
	if m.follow {
		return rh
	}
	now := time.Now().UnixNano()
	if now < m.nextCheck.Load() || !m.renewing.TryLock() {
		return rh
	}
	defer m.renewing.Unlock()
	m.nextCheck.Store(now + int64(rootCheckInterval))
	st, err := os.Stat(m.dir)
	if err != nil || rh == nil || os.SameFile(st, rh.st) {
		return rh
	}
	fresh, err := openRoot(m.dir, m.cacheBytes)
	if err != nil {
		return rh
	}
	m.root.Store(fresh)
	// Requests that took the old handle and open after this Close get ErrClosed, and retry
	// with the new one (open); its kept files go with it.
	_ = rh.close()
	return fresh
}

// openFlags: O_NONBLOCK so that a FIFO under DIR cannot block the open (it is refused as
// not regular right after); it changes nothing for regular files.
const openFlags = os.O_RDONLY | syscall.O_NONBLOCK

// source is a file to answer with: kept in memory, or open.
type source struct {
	kept *cachedFile
	f    *os.File
	st   fs.FileInfo
}

func (s source) close() {
	if s.f != nil {
		_ = s.f.Close()
	}
}

// get finds rel under the mount: a kept file, or the open file (kept now if it can be).
func (m *mount) get(rel string) (source, error) {
	rh := m.currentRoot()
	if kf := m.cached(rh, rel); kf != nil {
		return source{kept: kf}, nil
	}
	f, st, err := m.open(rh, rel)
	if err != nil {
		return source{}, err
	}
	if kf := m.keep(rh, rel, f, st); kf != nil {
		_ = f.Close()
		return source{kept: kf}, nil
	}
	return source{f: f, st: st}, nil
}

// open opens rel under the mount (rh is its current handle): a regular file, with its
// FileInfo.
func (m *mount) open(rh *rootHandle, rel string) (*os.File, fs.FileInfo, error) {
	if rel == "" {
		rel = "." // the prefix itself names the directory
	}
	var f *os.File
	var err error
	if m.follow {
		f, err = os.OpenFile(filepath.Join(m.dir, filepath.FromSlash(rel)), openFlags, 0)
	} else {
		if rh == nil {
			return nil, nil, os.ErrClosed
		}
		f, err = rh.root.OpenFile(rel, openFlags, 0)
		if errors.Is(err, os.ErrClosed) {
			if rh = m.root.Load(); rh == nil {
				return nil, nil, err
			}
			f, err = rh.root.OpenFile(rel, openFlags, 0)
		}
		if err != nil && isEscape(err) {
			err = fmt.Errorf("%w: %w", errEscape, err)
		}
	}
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err == nil && st.IsDir() {
		err = errIsDir
	} else if err == nil && !st.Mode().IsRegular() {
		err = errSpecial
	}
	if err != nil {
		_ = f.Close()
		return nil, nil, err
	}
	return f, st, nil
}

// isEscape recognises os.Root's refusal of a path (a symlink) that leads outside it. os.Root
// has no exported error for it; its message is "path escapes from parent".
func isEscape(err error) bool {
	var pe *fs.PathError
	return errors.As(err, &pe) && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrPermission) &&
		!errors.Is(err, syscall.ENOTDIR) && !errors.Is(err, syscall.ELOOP) && !errors.Is(err, os.ErrClosed)
}

// openVariant finds the first precompressed sibling of rel in the client's order of preference.
func (m *mount) openVariant(rel string, accepted []encoding) (encoding, source, bool) {
	for _, e := range accepted {
		if src, err := m.get(rel + e.suffix); err == nil {
			return e, src, true
		}
	}
	return encoding{}, source{}, false
}

// hasVariant says whether rel has a precompressed sibling in a coding not in tried.
func (m *mount) hasVariant(rel string, tried []encoding) bool {
	for _, e := range encodings {
		if slices.Contains(tried, e) {
			continue
		}
		if src, err := m.get(rel + e.suffix); err == nil {
			src.close()
			return true
		}
	}
	return false
}

// recorder notes the status and body size for OnServed. It passes ReadFrom on, so that
// net/http's sendfile path stays open through it.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

var recorders = sync.Pool{New: func() any { return new(recorder) }}

func getRecorder(w http.ResponseWriter) *recorder {
	r := recorders.Get().(*recorder)
	r.ResponseWriter, r.status, r.bytes = w, 0, 0
	return r
}

func putRecorder(r *recorder) {
	r.ResponseWriter = nil
	recorders.Put(r)
}

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

// ReadFrom is what io.CopyN calls: the ResponseWriter's own ReadFrom does the sendfile.
func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := r.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(writerOnly{r.ResponseWriter}, src)
	}
	r.bytes += n
	return n, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// writerOnly hides every method but Write, so that io.Copy cannot loop back into ReadFrom.
type writerOnly struct{ io.Writer }
