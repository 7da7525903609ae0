// Package spawn owns how a worker process comes to be: which interpreter runs it
// (ResolvePython), where its code comes from (InstallWorker and herd's code cache), which
// user it runs as (Credential), and how it is started: Exec forks and execs a fresh Python
// for each worker; Standby hands a worker to an interpreter started ahead of need
// (development mode). A started worker is a Process, waited for by exactly one goroutine of
// the supervisor.
//
// It knows nothing of requests, generations or the pool: the supervisor asks for a worker
// with a Spec and decides everything else.
package spawn
