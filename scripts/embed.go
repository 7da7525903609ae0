// Package scripts holds the Python side of herd: the worker package herd_worker, embedded
// into the binary, its tests, and the example and test apps.
package scripts

import "embed"

// WorkerPackage is the directory of Worker that holds the worker's package.
const WorkerPackage = "herd_worker"

// Worker holds the Python worker the master starts for each worker process: the package
// herd_worker, its .py files only (the protocol it speaks: docs/protocol.md).
//
//go:embed herd_worker/*.py
var Worker embed.FS
