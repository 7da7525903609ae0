// Package spawn owns how a worker process comes to be: which interpreter runs it
// (ResolvePython), where its code comes from (InstallWorker and herd's code cache), which
// user it runs as (Credential), and how it is started: Exec forks and execs a fresh Python
// for each worker; ForkServer has it forked by a fork server that imported the app once
// (--preload), or in development by one forked from a template holding the app's
// third-party modules. A started worker is a Process, waited for by exactly one goroutine of
// the supervisor, whether it is the master's child or a fork server's.
//
// It knows nothing of requests or the pool, and of generations only the number a Spec
// carries (a fork server imports one generation's code): the supervisor asks for a worker
// with a Spec and decides everything else.
package spawn
