// Package logfile is an append-only log file that can be reopened by path, so that
// logrotate can move it away and SIGUSR1 makes herd write to a fresh one (nginx's and
// gunicorn's USR1). Every File opened here is reopened by ReopenAll.
package logfile

import (
	"errors"
	"fmt"
	"os"
	"sync"
)

// File is a log file opened for appending. Write and Reopen may be called from any
// goroutine; one Write is one write(2), so lines from several writers do not interleave.
type File struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

var (
	openMu sync.Mutex
	open   = map[string]*File{}
)

// Open opens path for appending (creating it 0644), once per path: a second Open of the
// same path returns the same File, so that several loggers share one file and one reopen.
func Open(path string) (*File, error) {
	openMu.Lock()
	defer openMu.Unlock()
	if f, ok := open[path]; ok {
		return f, nil
	}
	fd, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	f := &File{path: path, f: fd}
	open[path] = f
	return f, nil
}

func openAppend(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	return f, nil
}

// Path is the file's path.
func (f *File) Path() string { return f.path }

// Fd is the current file's descriptor (for terminal checks).
func (f *File) Fd() uintptr {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.f.Fd()
}

func (f *File) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.f.Write(p)
}

// Reopen opens the path anew and swaps it in; writes that were under way finish on the
// old file. On failure the old file stays in use.
func (f *File) Reopen() error {
	fd, err := openAppend(f.path)
	if err != nil {
		return err
	}
	f.mu.Lock()
	old := f.f
	f.f = fd
	f.mu.Unlock()
	return old.Close()
}

// ReopenAll reopens every File opened so far: the SIGUSR1 handler calls it. It returns the
// paths reopened and every failure, joined.
func ReopenAll() ([]string, error) {
	openMu.Lock()
	files := make([]*File, 0, len(open))
	for _, f := range open {
		files = append(files, f)
	}
	openMu.Unlock()
	var paths []string
	var errs []error
	for _, f := range files {
		if err := f.Reopen(); err != nil {
			errs = append(errs, fmt.Errorf("reopen %s: %w", f.path, err))
			continue
		}
		paths = append(paths, f.path)
	}
	return paths, errors.Join(errs...)
}
