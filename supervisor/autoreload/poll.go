package autoreload

import (
	"io/fs"
	"path/filepath"
	"time"
)

// poller finds changes by walking the roots and comparing each wanted file's modification
// time, size and mode with the previous scan. It needs no kernel resource, so it works at
// any watch limit and on file systems inotify does not see into (network mounts).
type poller struct {
	roots    []Root
	snap     map[string]stamp
	lastScan time.Duration
}

type stamp struct {
	mtime time.Time
	size  int64
	mode  fs.FileMode
}

func newPoller(roots []Root) *poller {
	p := &poller{roots: roots}
	p.snap = p.walk()
	return p
}

func (p *poller) files() int { return len(p.snap) }

// interval is the wait before the next scan: at least min, and at least four scans' time so
// that a huge tree costs at most a fifth of a core.
func (p *poller) interval(min time.Duration) time.Duration {
	return max(min, 4*p.lastScan)
}

// scan returns the wanted paths created, changed or removed since the last scan.
func (p *poller) scan() []string {
	now := p.walk()
	var changed []string
	for name, st := range now {
		if old, ok := p.snap[name]; !ok || old != st {
			changed = append(changed, name)
		}
	}
	for name := range p.snap {
		if _, ok := now[name]; !ok {
			changed = append(changed, name)
		}
	}
	p.snap = now
	return changed
}

func (p *poller) walk() map[string]stamp {
	start := time.Now()
	snap := make(map[string]stamp, len(p.snap))
	for _, r := range p.roots {
		_ = filepath.WalkDir(r.Dir, func(name string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil // vanished or unreadable: it simply is not there this time
			}
			if d.IsDir() {
				if name != r.Dir && (!r.Recursive || !r.covers(name) || isVirtualenv(name)) {
					return fs.SkipDir
				}
				return nil
			}
			if !r.wants(name) {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return nil
			}
			snap[name] = stamp{mtime: fi.ModTime(), size: fi.Size(), mode: fi.Mode()}
			return nil
		})
	}
	p.lastScan = time.Since(start)
	return snap
}
