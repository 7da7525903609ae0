// Package chaos is herd's reliability suite (issue 9): it runs the real herd binary with real
// Python workers under a steady load from its own HTTP clients, injects faults (SIGKILL,
// SIGSTOP past --timeout, SIGHUP reloads, a leaking app under --reload-on-rss, a worker that
// calls os._exit mid-response) and judges every failed request against the worker it was on.
// The soak runs mixed load for a long time with reloads and kills and checks that the
// master's RSS, open fds and goroutines stay flat.
//
// Everything lives in the package's tests, so that the suite uses the same harness as every
// other end-to-end test (internal/herdtest):
//
//	go test ./server/chaos                       short form, part of make test (a few seconds per scenario)
//	make chaos                            30 s per scenario, prints the table, rewrites docs/RELIABILITY.md's chaos section
//	make soak                             30 minutes of soak (SOAK=10m for another length), rewrites its section
package chaos
