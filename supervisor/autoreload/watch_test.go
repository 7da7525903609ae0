package autoreload

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// syncBuffer collects log output written from the watcher's goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type running struct {
	w   *Watcher
	log *syncBuffer
}

// start runs a watcher until the test ends.
func start(t *testing.T, opts WatchOptions) running {
	t.Helper()
	logs := &syncBuffer{}
	opts.Log = zerolog.New(logs)
	w, err := NewWatcher(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if t.Failed() {
			t.Logf("watcher log:\n%s", logs.String())
		}
	})
	return running{w: w, log: logs}
}

func (r running) next(t *testing.T, timeout time.Duration) Batch {
	t.Helper()
	select {
	case b := <-r.w.Batches():
		return b
	case <-time.After(timeout):
		t.Fatalf("no batch of changes within %s", timeout)
		return Batch{}
	}
}

// none asserts that no batch comes within d: what a test of an ignored change can prove.
func (r running) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case b := <-r.w.Batches():
		t.Fatalf("unexpected batch: %d changes, %v", b.Changes, b.Paths)
	case <-time.After(d):
	}
}

func write(t *testing.T, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func sourceRoot(t *testing.T, dir string) Root {
	t.Helper()
	r, err := PythonSource(dir)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var engines = []Engine{Inotify, Poll}

func TestSaveIsOneBatch(t *testing.T) {
	for _, engine := range engines {
		t.Run(string(engine), func(t *testing.T) {
			dir := t.TempDir()
			write(t, filepath.Join(dir, "app.py"), "v = 1\n")
			r := start(t, WatchOptions{Roots: []Root{sourceRoot(t, dir)}, Engine: engine, PollInterval: 50 * time.Millisecond})
			saved := time.Now()
			write(t, filepath.Join(dir, "app.py"), "v = 2\n")
			b := r.next(t, 5*time.Second)
			t.Logf("%s: batch %s after the save", engine, time.Since(saved))
			if b.Changes != 1 || b.Paths[0] != filepath.Join(dir, "app.py") {
				t.Fatalf("batch %+v, want app.py alone", b)
			}
			r.none(t, 300*time.Millisecond)
		})
	}
}

// An editor's save is several events; vim's, with default settings: probe file 4913, the
// old file renamed to a backup, the new one written, its mode restored, the backup removed.
func TestEditorSaveIsOneBatch(t *testing.T) {
	dir := t.TempDir()
	app := filepath.Join(dir, "app.py")
	write(t, app, "v = 1\n")
	r := start(t, WatchOptions{Roots: []Root{sourceRoot(t, dir)}})
	write(t, filepath.Join(dir, ".app.py.swp"), "swap")
	write(t, filepath.Join(dir, "4913"), "")
	if err := os.Remove(filepath.Join(dir, "4913")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(app, app+"~"); err != nil {
		t.Fatal(err)
	}
	write(t, app, "v = 2\n")
	if err := os.Chmod(app, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(app + "~"); err != nil {
		t.Fatal(err)
	}
	b := r.next(t, 5*time.Second)
	if b.Changes != 1 || b.Paths[0] != app {
		t.Fatalf("batch %+v, want app.py alone", b)
	}
	r.none(t, 300*time.Millisecond)
}

// A git checkout rewrites hundreds of files in a row: one batch.
func TestBurstOf500IsOneBatch(t *testing.T) {
	for _, engine := range engines {
		t.Run(string(engine), func(t *testing.T) {
			dir := t.TempDir()
			for i := range 500 {
				write(t, filepath.Join(dir, fmt.Sprintf("pkg%d", i%10), fmt.Sprintf("m%d.py", i)), "x = 1\n")
			}
			r := start(t, WatchOptions{Roots: []Root{sourceRoot(t, dir)}, Engine: engine})
			began := time.Now()
			for i := range 500 {
				write(t, filepath.Join(dir, fmt.Sprintf("pkg%d", i%10), fmt.Sprintf("m%d.py", i)), "x = 2\n")
			}
			wrote := time.Since(began)
			b := r.next(t, 10*time.Second)
			t.Logf("%s: 500 files written in %s, one batch after %s", engine, wrote, time.Since(began))
			if b.Changes != 500 || len(b.Paths) != maxBatchPaths {
				t.Fatalf("batch of %d changes (%d paths named), want 500 in one", b.Changes, len(b.Paths))
			}
			r.none(t, time.Second)
		})
	}
}

func TestNewSubdirectoryIsWatched(t *testing.T) {
	for _, engine := range engines {
		t.Run(string(engine), func(t *testing.T) {
			dir := t.TempDir()
			r := start(t, WatchOptions{Roots: []Root{sourceRoot(t, dir)}, Engine: engine, PollInterval: 50 * time.Millisecond})
			// mkdir -p and a write at once: the file may exist before the watch does.
			first := filepath.Join(dir, "a", "b", "views.py")
			write(t, first, "x = 1\n")
			if b := r.next(t, 5*time.Second); !slices.Contains(b.Paths, first) {
				t.Fatalf("batch %+v, want %s", b, first)
			}
			// And a later write in the new directory is seen by its own watch.
			second := filepath.Join(dir, "a", "b", "models.py")
			write(t, second, "y = 1\n")
			if b := r.next(t, 5*time.Second); b.Changes != 1 || b.Paths[0] != second {
				t.Fatalf("batch %+v, want %s", b, second)
			}
		})
	}
}

func TestIgnoredChanges(t *testing.T) {
	for _, engine := range engines {
		t.Run(string(engine), func(t *testing.T) {
			dir := t.TempDir()
			write(t, filepath.Join(dir, "venv", "pyvenv.cfg"), "home = /usr/bin\n")
			write(t, filepath.Join(dir, "venv", "lib", "site.py"), "")
			write(t, filepath.Join(dir, ".git", "HEAD"), "")
			r := start(t, WatchOptions{Roots: []Root{sourceRoot(t, dir)}, Engine: engine, PollInterval: 50 * time.Millisecond})
			for _, name := range []string{
				"__pycache__/app.cpython-311.pyc", "app.pyc", ".git/objects/ab/cdef.py", ".git/HEAD",
				"venv/lib/site.py", "venv/lib/python3.11/site-packages/flask/app.py", ".app.py.swp", "app.py~",
				".#app.py", "4913", "README.md", "node_modules/x/setup.py", ".venv/lib/y.py",
			} {
				write(t, filepath.Join(dir, name), "changed\n")
			}
			r.none(t, 500*time.Millisecond)
			write(t, filepath.Join(dir, "app.py"), "v = 1\n")
			if b := r.next(t, 5*time.Second); b.Changes != 1 {
				t.Fatalf("batch %+v, want app.py alone", b)
			}
		})
	}
}

func TestReloadExtra(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	write(t, filepath.Join(dir, "templates", "base.html"), "<p>")
	write(t, filepath.Join(dir, ".env"), "A=1")
	glob, err := Extra("templates/**/*.html")
	if err != nil {
		t.Fatal(err)
	}
	env, err := Extra(".env")
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, WatchOptions{Roots: []Root{glob, env}})
	write(t, filepath.Join(dir, "templates", "notes.txt"), "no")
	write(t, filepath.Join(dir, ".envrc"), "no")
	r.none(t, 300*time.Millisecond)
	for _, name := range []string{"templates/base.html", "templates/blog/post/detail.html", ".env"} {
		write(t, filepath.Join(dir, name), "changed")
		if b := r.next(t, 5*time.Second); b.Changes != 1 || b.Paths[0] != filepath.Join(dir, name) {
			t.Fatalf("after writing %s: batch %+v", name, b)
		}
	}
}

func TestWatchLimitFallsBackToPolling(t *testing.T) {
	t.Run("at start", func(t *testing.T) {
		dir := t.TempDir()
		for i := range 10 {
			write(t, filepath.Join(dir, fmt.Sprintf("pkg%d", i), "__init__.py"), "")
		}
		r := start(t, WatchOptions{Roots: []Root{sourceRoot(t, dir)}, WatchLimit: 4, PollInterval: 50 * time.Millisecond})
		if r.w.Engine() != Poll {
			t.Fatalf("engine %s, want poll after the watch limit", r.w.Engine())
		}
		assertLimitExplained(t, r.log.String())
		write(t, filepath.Join(dir, "pkg9", "__init__.py"), "x = 1\n")
		if b := r.next(t, 5*time.Second); b.Changes != 1 {
			t.Fatalf("batch %+v, want pkg9/__init__.py", b)
		}
	})
	t.Run("while running", func(t *testing.T) {
		dir := t.TempDir()
		r := start(t, WatchOptions{Roots: []Root{sourceRoot(t, dir)}, WatchLimit: 2, PollInterval: 50 * time.Millisecond})
		write(t, filepath.Join(dir, "one", "a.py"), "")
		r.next(t, 5*time.Second)
		write(t, filepath.Join(dir, "two", "b.py"), "")
		r.next(t, 5*time.Second) // the directory that did not fit counts as a change
		assertLimitExplained(t, r.log.String())
		write(t, filepath.Join(dir, "two", "b.py"), "changed\n")
		if b := r.next(t, 5*time.Second); b.Changes != 1 {
			t.Fatalf("batch %+v, want two/b.py", b)
		}
	})
	t.Run("inotify forced", func(t *testing.T) {
		dir := t.TempDir()
		write(t, filepath.Join(dir, "a", "b", "c.py"), "")
		_, err := NewWatcher(WatchOptions{Roots: []Root{sourceRoot(t, dir)}, Engine: Inotify, WatchLimit: 2})
		if err == nil || !strings.Contains(err.Error(), "fs.inotify.max_user_watches") {
			t.Fatalf("New: %v, want the watch limit explained", err)
		}
	})
}

func assertLimitExplained(t *testing.T, log string) {
	t.Helper()
	for _, want := range []string{"inotify watch limit reached", "sysctl -w fs.inotify.max_user_watches=", "polling"} {
		if !strings.Contains(log, want) {
			t.Fatalf("log does not say %q:\n%s", want, log)
		}
	}
}

// 10,000 files in 200 directories: set up quickly, and a change is still seen.
func TestTenThousandFiles(t *testing.T) {
	dir := t.TempDir()
	for d := range 200 {
		sub := filepath.Join(dir, fmt.Sprintf("pkg%03d", d))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := range 50 {
			if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("mod%02d.py", f)), []byte("x = 1\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, engine := range engines {
		t.Run(string(engine), func(t *testing.T) {
			began := time.Now()
			r := start(t, WatchOptions{Roots: []Root{sourceRoot(t, dir)}, Engine: engine})
			setup := time.Since(began)
			if engine == Poll && !strings.Contains(r.log.String(), `"files":10000,`) {
				t.Fatalf("not polling 10000 files: %s", r.log.String())
			}
			changed := filepath.Join(dir, "pkg137", "mod42.py")
			saved := time.Now()
			write(t, changed, "x = 2\n")
			b := r.next(t, 10*time.Second)
			t.Logf("%s: set up in %s, change seen after %s", engine, setup, time.Since(saved))
			if b.Changes != 1 || b.Paths[0] != changed {
				t.Fatalf("batch %+v, want %s", b, changed)
			}
			if setup > 10*time.Second {
				t.Fatalf("watching 10,000 files took %s to set up", setup)
			}
		})
	}
}

func TestTouchFile(t *testing.T) {
	dir := t.TempDir()
	touch := filepath.Join(dir, "reload.txt")
	root, err := File(touch)
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, WatchOptions{Roots: []Root{root}, Engine: Poll, PollInterval: 50 * time.Millisecond})
	write(t, filepath.Join(dir, "other.txt"), "")
	r.none(t, 300*time.Millisecond)
	write(t, touch, "") // created: counts
	r.next(t, 5*time.Second)
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(touch, later, later); err != nil { // touch: only the mtime moves
		t.Fatal(err)
	}
	r.next(t, 5*time.Second)
}

func TestIgnoredFile(t *testing.T) {
	for name, want := range map[string]bool{
		"app.py": false, "app.pyc": true, ".app.py.swp": true, ".app.py.swx": true, "app.py~": true,
		".#app.py": true, "#app.py#": true, "4913": true, "settings.py___jb_tmp___": true,
		".env": false, "index.html": false, "49130": false,
	} {
		if got := IgnoredFile(name); got != want {
			t.Errorf("IgnoredFile(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestMatchSegments(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"*.html", "base.html", true},
		{"*.html", "blog/base.html", false},
		{"**/*.html", "base.html", true},
		{"**/*.html", "blog/post/base.html", true},
		{"**/*.html", "blog/post/base.txt", false},
		{"blog/**", "blog/a/b", true},
		{"*/settings.ini", "prod/settings.ini", true},
		{"*/settings.ini", "settings.ini", false},
		{".env*", ".env.local", true},
	} {
		if got := matchSegments(strings.Split(tc.pattern, "/"), strings.Split(tc.name, "/")); got != tc.want {
			t.Errorf("match(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

func TestBatcherSettles(t *testing.T) {
	o := withDefaults(WatchOptions{})
	t0 := time.Unix(1000, 0)
	var b batcher
	if d := b.add([]string{"a"}, o, t0); d != o.Quiet {
		t.Fatalf("one change settles in %s, want %s", d, o.Quiet)
	}
	var paths []string
	for i := range burstSize {
		paths = append(paths, fmt.Sprint(i))
	}
	if d := b.add(paths, o, t0.Add(10*time.Millisecond)); d != o.BurstQuiet {
		t.Fatalf("a burst settles in %s, want %s", d, o.BurstQuiet)
	}
	// Changes that never stop are delivered at MaxWait after the first.
	if d := b.add([]string{"z"}, o, t0.Add(o.MaxWait-time.Millisecond)); d != time.Millisecond {
		t.Fatalf("at the cap: settles in %s, want 1ms", d)
	}
}

// TestExtraMissingDir: a glob under a directory that does not exist yet watches its nearest
// existing ancestor for the files the glob names, instead of stopping herd.
func TestExtraMissingDir(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	r, err := Extra("templates/**/*.html")
	if err != nil {
		t.Fatal(err)
	}
	if r.Missing != filepath.Join(dir, "templates") || r.Dir != dir || !r.Recursive {
		t.Fatalf("root %+v", r)
	}
	if !r.Match("templates/a/b.html") || r.Match("templates/a/b.py") || r.Match("other/b.html") {
		t.Fatal("the glob does not match as it would under templates/")
	}
}
