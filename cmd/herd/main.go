// Command herd serves Python WSGI apps through supervised Python worker processes.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/herd-server/herd/internal/initproc"
)

// Exit statuses of the herd command.
const (
	exitOK      = 0
	exitError   = 1 // bad configuration, a listener that cannot open, an unexpected failure
	exitAppBoot = 3 // the app could not be loaded by any worker: nothing could ever be served
)

// exitCodeError carries the process exit status chosen by a command.
type exitCodeError struct {
	code int
	err  error
}

func (e *exitCodeError) Error() string { return e.err.Error() }
func (e *exitCodeError) Unwrap() error { return e.err }

func main() {
	if initproc.IsPID1() {
		// A container's first process: reap orphans and forward signals, and run the real
		// herd as a child.
		os.Exit(initproc.Run())
	}
	root := newRootCmd()
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "herd:", err)
		var ec *exitCodeError
		if errors.As(err, &ec) {
			os.Exit(ec.code)
		}
		os.Exit(exitError)
	}
}
