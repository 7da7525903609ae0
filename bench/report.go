package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"
)

// inprocResult is what bench/inproc.py prints.
type inprocResult struct {
	Calls              int64   `json:"calls"`
	CPUSeconds         float64 `json:"cpu_seconds"`
	CallsPerCoreSecond float64 `json:"calls_per_core_second"`
	UsPerCall          float64 `json:"us_per_call"`
}

// runInproc calls the app in a loop in one Python process: the ceiling of any server of it.
func runInproc(e *env, a app, cpu time.Duration) (inprocResult, error) {
	args := []string{e.python, filepath.Join(e.root, "bench", "inproc.py"), e.appDir(), a.module, a.path,
		fmt.Sprintf("%.1f", cpu.Seconds())}
	e.noteCommand("inproc/"+a.name, args)
	out, err := exec.Command(args[0], args[1:]...).Output()
	if err != nil {
		return inprocResult{}, fmt.Errorf("in-process %s: %w", a.name, err)
	}
	var r inprocResult
	if err := json.Unmarshal(out, &r); err != nil {
		return inprocResult{}, fmt.Errorf("in-process %s printed %q: %w", a.name, out, err)
	}
	return r, nil
}

// goBenchArgs is the command of the proxy's benchmarks: per request, the master's CPU and the
// worker's, against real workers, without HTTP clients in the way.
func goBenchArgs(benchtime time.Duration) []string {
	return []string{"go", "test", "./proxy", "-run", "^$", "-bench", ".", "-benchtime", benchtime.String(), "-count", "1"}
}

// runGoBench runs the proxy's benchmarks and keeps their result lines.
func runGoBench(ctx context.Context, e *env, benchtime time.Duration) ([]string, error) {
	args := goBenchArgs(benchtime)
	var out bytes.Buffer
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = e.root, &out, &out
	p, err := running.start("go test -bench", cmd)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.done:
	case <-ctx.Done():
	}
	running.stop(p, syscall.SIGTERM, 5*time.Second)
	if p.err != nil {
		return nil, fmt.Errorf("%s: %v\n%s", strings.Join(args, " "), p.err, out.String())
	}
	var lines []string
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "Benchmark") || strings.HasPrefix(l, "cpu:") {
			lines = append(lines, strings.Join(strings.Fields(l), " "))
		}
	}
	return lines, nil
}

// renderGoBench is the proxy's per-request cost split.
func renderGoBench(b *strings.Builder, res *results, p plan) {
	if len(res.gobench) == 0 {
		return
	}
	fmt.Fprintf(b, "\n### The master's and the worker's CPU per request\n\n`%s` (proxy/bench_test.go), "+
		"on the hello app with real workers (under /usr/bin/python3, Debian's: proxy/bench_test.go "+
		"names it, so these figures are not on the venv's Python as the tables above are): WorkerDirect is a uwsgi request written on a worker "+
		"connection and its answer read (no HTTP), Handler adds proxy.Handler.ServeHTTP on an "+
		"in-memory request, HTTP adds the HTTP server on loopback (h1: herd's own, as on --http; "+
		"net-http: Go's, for comparison) with 8 keep-alive Go clients in the same process (their "+
		"CPU counts as the master's there); WorkerLink is one standalone worker asked over a "+
		"connection per request (as nginx's uwsgi_pass does) and over a kept one (as herd's "+
		"master does). master-us/op is this process's CPU per request, worker-us/op the Python "+
		"workers'.\n\n```\n%s\n```\n",
		strings.Join(goBenchArgs(p.gobench), " "), strings.Join(res.gobench, "\n"))
}

// machine is the description the report starts with.
type machine struct {
	when     time.Time
	lines    []string // "name: value"
	loadFrom string
	others   othersSnapshot // the machine's CPU by process at the start (others.go)
}

// describeMachine names the machine and the version of every tool in the run.
func describeMachine(e *env) machine {
	first := func(name string, args ...string) string {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil && len(out) == 0 {
			return "missing (" + err.Error() + ")"
		}
		return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	read := func(path string) string { b, _ := os.ReadFile(path); return strings.TrimSpace(string(b)) }
	cpuModel := "unknown"
	for _, line := range strings.Split(read("/proc/cpuinfo"), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			cpuModel = strings.TrimSpace(v)
			break
		}
	}
	rev := first("git", "-C", e.root, "log", "-1", "--format=%h %s")
	versions := "import importlib.metadata as m; print(' / '.join(m.version(p) for p in ('flask', 'django')))"
	lines := []string{
		fmt.Sprintf("CPU: %d cores (nproc), %s", runtime.NumCPU(), cpuModel),
		"kernel: Linux " + read("/proc/sys/kernel/osrelease"),
		"herd: " + rev,
		"Python of herd's workers and of every peer: " + first(e.python, "--version") + " (the venv " +
			strings.TrimPrefix(e.venv, e.root+"/") + ", requirements/peers.txt)",
		"Granian: " + first(e.bin("granian"), "--version"),
		"gunicorn: " + first(e.bin("gunicorn"), "--version"),
		"uWSGI: " + first(e.bin("uwsgi"), "--version") + " (pyuwsgi)",
		"Flask / Django: " + first(e.python, "-c", versions),
	}
	if e.debian {
		lines = append(lines,
			"Debian's older peers: "+first(e.debianPython, "--version")+" ("+e.debianPython+"), uWSGI "+
				first("uwsgi", "--version")+", gunicorn "+first(e.debianPython, "-c", "import gunicorn; print(gunicorn.__version__)")+
				", Flask / Django "+first(e.debianPython, "-c", versions))
	}
	lines = append(lines,
		"nginx: "+first("nginx", "-v"),
		"wrk: "+first("wrk", "-v"),
		"perf: "+first("perf", "--version")+"; strace: "+first("strace", "-V"),
		"Go: "+runtime.Version())
	return machine{when: time.Now().UTC(), loadFrom: read("/proc/loadavg"), lines: lines, others: takeOthersSnapshot()}
}

// median of a metric over the rounds.
func median[T int64 | float64 | time.Duration](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := append([]T(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)/2]
}

// row is the medians of one server in one table.
type row struct {
	rps                float64
	rpsMin, rpsMax     float64 // the spread over rounds: on a busy machine it says how far to trust rps
	p50, p99           time.Duration
	errs               errCounts // summed over rounds: a median would hide one bad round
	rssTotal, rssRoot  int64
	cpuPerReq, startup time.Duration
	rounds             int
}

func summarize(samples []sample) row {
	var rps []float64
	var p50, p99, cpu, start []time.Duration
	var total, root []int64
	r := row{rounds: len(samples)}
	for _, s := range samples {
		rps = append(rps, s.rps())
		p50, p99 = append(p50, s.p50), append(p99, s.p99)
		cpu, start = append(cpu, s.cpuPerReq), append(start, s.startup)
		total, root = append(total, s.rssTotal), append(root, s.rssRoot)
		r.errs = r.errs.add(s.errs)
	}
	r.rps, r.p50, r.p99 = median(rps), median(p50), median(p99)
	if len(rps) > 0 {
		r.rpsMin, r.rpsMax = slices.Min(rps), slices.Max(rps)
	}
	r.cpuPerReq, r.startup = median(cpu), median(start)
	r.rssTotal, r.rssRoot = median(total), median(root)
	return r
}

// spread is the lowest and highest round's requests/s, in brackets, when there are rounds.
func spread(r row) string {
	if r.rounds < 2 {
		return ""
	}
	return fmt.Sprintf(" (%.0f-%.0f)", r.rpsMin, r.rpsMax)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

// renderTables writes one table per app and connection count.
func renderTables(b *strings.Builder, p plan, res *results) {
	for _, a := range p.apps {
		for _, c := range p.conns {
			if !hasSamples(p, res, a, c) {
				continue
			}
			fmt.Fprintf(b, "\n### %s, %d connections\n\n", a.name, c)
			b.WriteString("| server | req/s | p50 ms | p99 ms | errors | RSS MiB (masters) | CPU us/req | start ms | herd / this |\n")
			b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
			herd := summarize(res.samples[cell{a.name, c, "herd"}])
			for _, s := range p.servers {
				if !s.runs(a) {
					continue
				}
				k := cell{a.name, c, s.key}
				if why, ok := res.na[k]; ok {
					fmt.Fprintf(b, "| %s | %s | | | | | | | |\n", s.label, why)
					continue
				}
				r := summarize(res.samples[k])
				if r.rounds == 0 {
					continue
				}
				ratio := "-"
				if herd.rounds > 0 && r.rps > 0 {
					ratio = fmt.Sprintf("%.2f", herd.rps/r.rps)
				}
				fmt.Fprintf(b, "| %s | %.0f%s | %s | %s | %v | %.1f (%.1f) | %.0f | %.0f | %s |\n",
					s.label, r.rps, spread(r), ms(r.p50), ms(r.p99), r.errs, mib(r.rssTotal), mib(r.rssRoot),
					float64(r.cpuPerReq)/float64(time.Microsecond), float64(r.startup)/float64(time.Millisecond), ratio)
			}
		}
	}
}

// hasSamples says whether any server has a sample or a reason in one table.
func hasSamples(p plan, res *results, a app, c int) bool {
	for _, s := range p.servers {
		k := cell{a.name, c, s.key}
		if len(res.samples[k]) > 0 || res.na[k] != "" {
			return true
		}
	}
	return false
}

// renderLimits is the in-process table: each app's ceiling on this machine's cores, and how
// close herd comes to it.
func renderLimits(b *strings.Builder, p plan, res *results) {
	if len(res.inproc) == 0 {
		return
	}
	cores := runtime.NumCPU()
	fmt.Fprintf(b, "\n### The in-process limit\n\nThe same app called in a loop in one Python process "+
		"(CPU time, so calls/s per core); the ceiling of any server on %d cores is about %d x that, "+
		"with no HTTP, no wrk and no master.\n\n", cores, cores)
	fmt.Fprintf(b, "| app | calls/s per core | us per call | herd req/s (%d conns) | herd / ceiling |\n|---|---:|---:|---:|---:|\n", p.conns[0])
	for _, a := range p.apps {
		r, ok := res.inproc[a.name]
		if !ok {
			continue
		}
		herd := summarize(res.samples[cell{a.name, p.conns[0], "herd"}])
		rps, share := "-", "-"
		if herd.rounds > 0 {
			rps = fmt.Sprintf("%.0f", herd.rps)
			share = fmt.Sprintf("%.3f", herd.rps/(r.CallsPerCoreSecond*float64(cores)))
		}
		fmt.Fprintf(b, "| %s | %.0f | %.2f | %s | %s |\n", a.name, r.CallsPerCoreSecond, r.UsPerCall, rps, share)
	}
}

// renderReport is the whole Markdown report: conditions, tables, machine, commands.
func renderReport(e *env, p plan, m machine, res *results, note string) string {
	var b strings.Builder
	b.WriteString("# herd benchmarks\n\n")
	b.WriteString("Produced by `make bench` (bench/: `go run ./bench`, see `go run ./bench -h`); " +
		"do not edit the figures by hand, run it again.\n\n")
	fmt.Fprintf(&b, "Run %s: %d round(s), every figure the median over the rounds (errors: the sum); "+
		"wrk `-t1`, %v per load after a %v warm-up, %d workers per server, servers alternated "+
		"within each round and the order rotated between rounds.\n\n",
		m.when.Format("2006-01-02 15:04 UTC"), p.rounds, p.duration, p.warmup, e.workers)
	fmt.Fprintf(&b, "**wrk shares the machine's %d cores with the server**: these are figures of "+
		"server and load generator together, comparable with each other inside one run, not "+
		"absolute capacities. Load average at the start: %s, at the end: %s.\n",
		runtime.NumCPU(), m.loadFrom, readLoadavg())
	if m.others.busy > 0 {
		fmt.Fprintf(&b, "\n**What else ran** (from /proc): %s.\n", othersReport(m.others, takeOthersSnapshot()))
	}
	if note != "" {
		fmt.Fprintf(&b, "\n**Conditions:** %s\n", note)
	}
	b.WriteString("\n**Same Python for everyone.** The peers are today's releases from the project's " +
		"pinned venv (requirements/peers.txt, built by `make venv`): Granian with `--interface wsgi`, " +
		"gunicorn 27 (sync, and gthread with 4 threads), uWSGI as the pyuwsgi wheel (`--http-socket`, " +
		"and behind nginx by `--socket`). herd's workers run on that venv's interpreter too " +
		"(`herd serve --venv`), so every row runs the same Python, Flask and Django, and a ratio " +
		"compares servers, not interpreters. The apps (bench/apps): hello, a bare WSGI callable; " +
		"flask, a Flask view answering JSON; django, a view through Django's URL resolver, no " +
		"middleware.\n")
	if e.debian {
		b.WriteString("\nRows named **Debian 12's older** are Debian's packages (uWSGI 2.0.21 with its " +
			"python3 plugin, gunicorn 20.1) on /usr/bin/python3 with Debian's Flask and Django: another " +
			"interpreter and older frameworks, so their ratios compare whole stacks, not servers.\n")
	}
	b.WriteString("\nColumns: requests/s, the median and in brackets the lowest and highest round; p50 and p99 latency as wrk saw it; errors (connect, read, " +
		"write, timeout and non-2xx/3xx, summed over rounds); RSS: the largest total seen during " +
		"the load over every process of the server (nginx included where it is in front), the " +
		"masters alone in brackets; CPU per request: user + system time of all those processes " +
		"over the load, divided by the requests; start: from the first exec to the first 200; " +
		"herd / this: herd's requests/s over this server's.\n\n" +
		"`uwsgi --http-socket` shows about one read error per request: it answers HTTP/1.1 " +
		"without `Connection: close` and then closes the connection, so the next request wrk " +
		"writes on it gets no answer and wrk reconnects (curl notices the dead connection before " +
		"reusing it). Its requests/s count only answered requests. nginx's non-2xx answers at " +
		"256 connections are 502s: uWSGI's socket has a listen backlog of 100 (`--listen`), and " +
		"nginx gives up when it is full. RSS is summed per process, so pages a forked worker " +
		"shares with its master (uWSGI imports the app in the master, then forks) count once " +
		"per process.\n")
	renderTargets(&b, res)
	renderTables(&b, p, res)
	renderMixed(&b, p, res)
	renderLimits(&b, p, res)
	renderWhere(&b, p, res)
	renderGoBench(&b, res, p)
	b.WriteString("\n## The machine\n\n")
	for _, l := range m.lines {
		b.WriteString("- " + l + "\n")
	}
	renderCommands(&b, e, p)
	return b.String()
}

func readLoadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.TrimSpace(string(b))
}

// renderCommands lists the exact command of each server (with the hello app; the others
// differ only in the module), wrk's, and the nginx configuration.
func renderCommands(b *strings.Builder, e *env, p plan) {
	b.WriteString("\n## The exact commands\n\nPorts and the temp directory (TMP) change from run to run; " +
		"the Flask and Django rows run the same commands with `flaskapp:app` and `djangoapp:application`.\n\n```\n")
	keys := make([]string, 0, len(e.commands))
	for k := range e.commands {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	port := regexp.MustCompile(`127\.0\.0\.1:[0-9]+|--port [0-9]+`)
	tidy := strings.NewReplacer(e.self, "bench", e.tmp, "TMP", e.root+"/", "", "'", `'\''`)
	for _, k := range keys {
		quoted := make([]string, len(e.commands[k]))
		for i, a := range e.commands[k] {
			if quoted[i] = tidy.Replace(a); strings.ContainsAny(a, " ;'") {
				quoted[i] = "'" + quoted[i] + "'"
			}
		}
		line := port.ReplaceAllStringFunc(strings.Join(quoted, " "), func(m string) string {
			if strings.HasPrefix(m, "--port") {
				return "--port PORT"
			}
			return "127.0.0.1:PORT"
		})
		fmt.Fprintf(b, "%s: %s\n", k, line)
	}
	fmt.Fprintf(b, "load: %s\n```\n", strings.Join(wrkArgs("TMP/report.lua", p.conns[0], p.duration, "http://127.0.0.1:PORT/"), " "))
	b.WriteString("\nTMP/report.lua prints wrk's summary as one line (exact counts, percentiles in microseconds):\n\n```lua\n" + wrkReport + "```\n")
	b.WriteString("\nnginx runs with this configuration (DIR inside TMP, PASS the backend's socket):\n\n```nginx\n" +
		strings.NewReplacer("{{DIR}}", "DIR", "{{LISTEN}}", "127.0.0.1:PORT", "{{PASS}}", "PASS").Replace(nginxConf) + "```\n")
	if _, ok := e.commands["nginx-herd-http/nginx"]; ok {
		b.WriteString("\nnginx in front of herd's HTTP socket (nginx -> herd (HTTP keep-alive)) runs with this one:\n\n```nginx\n" +
			strings.NewReplacer("{{DIR}}", "DIR", "{{LISTEN}}", "127.0.0.1:PORT", "{{PASS}}", "PASS").Replace(nginxHTTPConf) + "```\n")
	}
	if _, ok := e.commands["nginx-static/nginx"]; ok {
		b.WriteString("\nnginx serving the static files runs with this configuration (STATIC: the directory herd's --static serves too):\n\n```nginx\n" +
			strings.NewReplacer("{{DIR}}", "DIR", "{{LISTEN}}", "127.0.0.1:PORT", "{{STATIC}}", "STATIC").Replace(nginxStaticConf) + "```\n")
	}
}
