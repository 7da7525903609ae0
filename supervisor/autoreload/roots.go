package autoreload

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Root is one place to watch: a directory, walked recursively or not, and which of the files
// under it count as changes.
type Root struct {
	Dir       string // absolute directory
	Recursive bool   // watch subdirectories too, including ones created later
	// Match says whether a file counts; rel is its slash-separated path relative to Dir.
	Match func(rel string) bool
	// Missing is the directory a --reload-extra glob names that does not exist yet: Dir is
	// then its nearest existing ancestor, watched until it appears. "" when it exists.
	Missing string
}

// PythonSource watches every *.py file under dir, at any depth: the app's source tree.
func PythonSource(dir string) (Root, error) {
	abs, err := absDir(dir)
	if err != nil {
		return Root{}, err
	}
	return Root{Dir: abs, Recursive: true, Match: func(rel string) bool {
		return strings.HasSuffix(rel, ".py") && !IgnoredFile(path.Base(rel))
	}}, nil
}

// File watches one file, which need not exist yet (its creation counts) but whose directory
// must.
func File(name string) (Root, error) {
	abs, err := filepath.Abs(name)
	if err != nil {
		return Root{}, fmt.Errorf("watch %s: %w", name, err)
	}
	dir, base := filepath.Split(abs)
	if _, err := absDir(dir); err != nil {
		return Root{}, fmt.Errorf("watch %s: %w", name, err)
	}
	return Root{Dir: filepath.Clean(dir), Match: func(rel string) bool { return rel == base }}, nil
}

// Extra parses a --reload-extra value: a directory (every file in it, at any depth, except
// the ignored ones), a file, or a glob. A glob's `*`, `?` and `[...]` match within one path
// segment, and a `**` segment matches any number of directories: `templates/**/*.html`,
// `conf/*.ini`, `.env*`.
func Extra(spec string) (Root, error) {
	if !hasMeta(spec) {
		fi, err := os.Stat(spec)
		if err == nil && fi.IsDir() {
			abs, err := absDir(spec)
			if err != nil {
				return Root{}, err
			}
			return Root{Dir: abs, Recursive: true, Match: func(rel string) bool { return !IgnoredFile(path.Base(rel)) }}, nil
		}
		return File(spec)
	}
	abs, err := filepath.Abs(spec)
	if err != nil {
		return Root{}, fmt.Errorf("reload-extra %s: %w", spec, err)
	}
	segs := strings.Split(filepath.ToSlash(abs), "/")
	i := 0
	for i < len(segs) && !hasMeta(segs[i]) {
		i++
	}
	base, pattern := "/"+path.Join(segs[:i]...), segs[i:]
	missing := ""
	for i > 1 {
		if fi, err := os.Stat(base); err == nil && fi.IsDir() {
			break
		}
		// templates/**/*.html before templates/ exists: watch the nearest directory that
		// does, for the files the glob will match once it is made (uWSGI and gunicorn
		// refuse to start, or ignore it).
		if missing == "" {
			missing = base
		}
		i--
		base, pattern = "/"+path.Join(segs[:i]...), segs[i:]
	}
	for _, p := range pattern {
		if _, err := path.Match(p, ""); err != nil {
			return Root{}, fmt.Errorf("reload-extra %q: bad glob: %w", spec, err)
		}
	}
	dir, err := absDir(base)
	if err != nil {
		return Root{}, fmt.Errorf("reload-extra %q: %w", spec, err)
	}
	recursive := len(pattern) > 1 || strings.Contains(spec, "**")
	return Root{Dir: dir, Recursive: recursive, Missing: missing, Match: func(rel string) bool {
		return !IgnoredFile(path.Base(rel)) && matchSegments(pattern, strings.Split(rel, "/"))
	}}, nil
}

// matchSegments matches a path against a glob split into segments, where a "**" segment
// stands for zero or more whole segments.
func matchSegments(pattern, name []string) bool {
	for len(pattern) > 0 {
		if pattern[0] == "**" {
			for skip := 0; skip <= len(name); skip++ {
				if matchSegments(pattern[1:], name[skip:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := path.Match(pattern[0], name[0]); !ok {
			return false
		}
		pattern, name = pattern[1:], name[1:]
	}
	return len(name) == 0
}

func hasMeta(s string) bool { return strings.ContainsAny(s, "*?[") }

func absDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("watch %s: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("watch: %w", err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("watch %s: not a directory", dir)
	}
	return abs, nil
}

// wants says whether a change of p counts for this root.
func (r Root) wants(p string) bool {
	rel, ok := relInside(r.Dir, p)
	if !ok {
		return false
	}
	dirs := strings.Split(rel, "/")
	dirs = dirs[:len(dirs)-1]
	if !r.Recursive && len(dirs) > 0 {
		return false
	}
	for _, d := range dirs {
		if ignoredDirName(d) {
			return false
		}
	}
	return r.Match(rel)
}

// covers says whether the directory dir is to be watched for this root.
func (r Root) covers(dir string) bool {
	if dir == r.Dir {
		return true
	}
	if !r.Recursive {
		return false
	}
	rel, ok := relInside(r.Dir, dir)
	if !ok {
		return false
	}
	for _, d := range strings.Split(rel, "/") {
		if ignoredDirName(d) {
			return false
		}
	}
	return true
}

// relInside returns p relative to dir, slash-separated, when p is strictly inside dir.
func relInside(dir, p string) (string, bool) {
	if !strings.HasPrefix(p, dir) {
		return "", false
	}
	rest := p[len(dir):]
	if dir != "/" {
		if !strings.HasPrefix(rest, string(filepath.Separator)) {
			return "", false
		}
		rest = rest[1:]
	}
	if rest == "" {
		return "", false
	}
	return filepath.ToSlash(rest), true
}
