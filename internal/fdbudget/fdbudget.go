// Package fdbudget splits the master's open-file limit (RLIMIT_NOFILE) between what holds
// descriptors, so that no flood of one kind starves another of them: the master's own
// (listeners, logs, and the workers' sockets, pipes and control channels, which it must
// always be able to make anew), the client connections (--max-connections), and the files
// requests hold for a while (spilled request bodies, spooled answers). Each gets a bound:
// accept, spawning a worker and opening a temporary file never meet EMFILE.
//
// It owns the arithmetic and the semaphore for files; what is refused at a bound, and how
// it is said, is its callers'. It imports nothing of herd's.
package fdbudget

import (
	"fmt"
	"sync/atomic"
	"syscall"
)

// Split is how the open-file limit is shared.
type Split struct {
	NoFile  uint64 // the limit itself (RLIMIT_NOFILE's soft value)
	Reserve int    // kept for the master's own descriptors
	Conns   int    // client connections at once: one descriptor each
	Files   int    // descriptors of files held by requests at once
}

// Plan splits the open-file limit: reserve first, then what is left in two halves, one for
// the connections (at most wantConns, the rest going to files) and one for the files
// requests hold. A connection can hold more than its socket: a spilled body, a spooled
// answer opened twice, and over HTTP/2 that many per stream; those come from Files,
// whatever the connection, so that its bound holds however they are spread.
func Plan(wantConns, reserve int) (Split, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return Split{Conns: wantConns, Reserve: reserve}, fmt.Errorf("read the open-file limit: %w", err)
	}
	return split(rl.Cur, wantConns, reserve), nil
}

func split(nofile uint64, wantConns, reserve int) Split {
	room := max(int64(min(nofile, 1<<40))-int64(reserve), 2)
	conns := max(min(int64(wantConns), room/2), 1)
	return Split{NoFile: nofile, Reserve: reserve, Conns: int(conns), Files: int(max(room-conns, 1))}
}

// Files counts the descriptors requests hold on files, up to a bound. A nil *Files has no
// bound.
type Files struct {
	max   int64
	inUse atomic.Int64
}

// NewFiles returns a bound of max descriptors.
func NewFiles(max int) *Files { return &Files{max: int64(max)} }

// Take reserves n descriptors; false, reserving none, when that would pass the bound.
func (f *Files) Take(n int) bool {
	if f == nil {
		return true
	}
	if f.inUse.Add(int64(n)) > f.max {
		f.inUse.Add(-int64(n))
		return false
	}
	return true
}

// Give returns n descriptors Take reserved.
func (f *Files) Give(n int) {
	if f != nil {
		f.inUse.Add(-int64(n))
	}
}

// Max is the bound (0 for a nil Files: none).
func (f *Files) Max() int {
	if f == nil {
		return 0
	}
	return int(f.max)
}

// InUse is how many descriptors are taken now.
func (f *Files) InUse() int {
	if f == nil {
		return 0
	}
	return int(f.inUse.Load())
}
