package server

import (
	"runtime"
	"runtime/debug"
)

// setMasterProcs sets the master's GOMAXPROCS (--master-procs) and returns it.
//
// 0 halves the runtime's default (which already follows CPU affinity and cgroup limits),
// unless the GOMAXPROCS environment variable chose a value. Why not every core: the master
// shares the machine with its Python workers, and each request wakes a parked goroutine
// twice (the client's and the worker's answer); with an idle scheduler per core, Go wakes a
// spinning thread to look for that work each time. On the 2-core benchmark machine (hello
// app, 2 workers, wrk -c16) one scheduler cut the master's CPU per request from 144-155 us
// to 87-119 us (docs/BENCHMARKS.md).
func setMasterProcs(n int, fromEnv bool) int {
	if n == 0 {
		if fromEnv {
			return runtime.GOMAXPROCS(0)
		}
		n = max(1, runtime.GOMAXPROCS(0)/2)
	}
	runtime.GOMAXPROCS(n)
	return n
}

// masterGCPercent is the master's GOGC unless the environment sets one. Its live heap is a
// few MiB that churns with every request (buffers, headers); the default 100 lets the heap
// grow to twice that between collections. At 50, on the 2-core machine with 256 wrk
// connections on 2 hello workers, the master's RSS went 29.9 -> 26.5 MiB with no change in
// requests/s.
const masterGCPercent = 50

// setMasterGC applies masterGCPercent unless GOGC is set.
func setMasterGC(fromEnv bool) {
	if !fromEnv {
		debug.SetGCPercent(masterGCPercent)
	}
}
