// Package scripts holds the Python side of herd: worker.py, embedded into the binary, and
// the example app that `make run` serves.
package scripts

import _ "embed"

// WorkerPy is the source of the Python worker the master starts for each worker process.
//
//go:embed worker.py
var WorkerPy []byte
