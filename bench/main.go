// Command bench is herd's side-by-side benchmark (`make bench`): on one machine in one run it
// starts herd and today's peers from the project's venv (Granian, gunicorn 27, uWSGI, nginx
// in front of uWSGI; every Python server on the venv's Python, herd's workers too) on
// loopback, warms each, loads it with wrk, stops it, alternating servers and repeating
// rounds, and prints the medians with the ratios herd / peer. A mixed run measures fast
// requests while a slow view holds a worker. It also measures the limits (the same app called
// in-process, a bare Go net/http server) and where a request's time goes in herd beside
// Granian (CPU per process, system calls per request). See docs/BENCHMARKS.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// plan is one benchmark run's parameters.
type plan struct {
	servers  []server
	apps     []app
	conns    []int
	rounds   int
	duration time.Duration
	warmup   time.Duration
	mixed    time.Duration // the mixed run's measured load per server and round, 0 to skip
	inproc   time.Duration // in-process limit: CPU seconds per app, 0 to skip
	gobench  time.Duration // -benchtime of the proxy's go test benchmarks, 0 to skip
	where    time.Duration // where the time goes, herd beside Granian: load per measure, 0 to skip
	log      func(format string, args ...any)
}

// sample is one measured load of one server.
type sample struct {
	load
	rssTotal, rssRoot int64         // the largest seen during the load
	cpuPerReq         time.Duration // server CPU (every process of it) per request
	startup           time.Duration
}

// cell names one row of one table.
type cell struct {
	app    string
	conns  int
	server string
}

// results holds every sample and every reason a row could not run.
type results struct {
	samples map[cell][]sample
	na      map[cell]string
	mixed   map[string][]mixedSample // by server key
	mixedNA map[string]string
	inproc  map[string]inprocResult
	gobench []string // the result lines of go test -bench ./proxy
	where   []whereResult
}

func newResults() *results {
	return &results{samples: make(map[cell][]sample), na: make(map[cell]string),
		mixed: make(map[string][]mixedSample), mixedNA: make(map[string]string),
		inproc: make(map[string]inprocResult)}
}

// options are the command line's choices.
type options struct {
	servers, apps, conns string
	debian               bool
	rounds, workers      int
	duration, warmup     time.Duration
	mixed, inproc        time.Duration
	gobench, where       time.Duration
	herd, venv           string
	report, note         string
}

func main() {
	var o options
	flag.BoolVar(&o.debian, "debian", false, "also run Debian 12's older uWSGI and gunicorn on /usr/bin/python3 (clearly labelled rows)")
	flag.StringVar(&o.servers, "servers", "", "comma-separated servers to run (default: every server not marked extra): "+serverKeys())
	flag.StringVar(&o.apps, "apps", "", "comma-separated apps (default hello,flask,django; also get64k, post1m, static1k, static64k)")
	flag.StringVar(&o.conns, "conns", "16,256", "comma-separated wrk connection counts")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; every figure is the median over rounds (0: only the mixed run and the limits)")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "wrk duration per measured load (whole seconds)")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "wrk warm-up after each start, not measured")
	flag.DurationVar(&o.mixed, "mixed", 10*time.Second, "the mixed run's load per server and round: fast requests while a 1.5 s view is asked in a loop; 0 skips it")
	flag.DurationVar(&o.inproc, "inproc", 2*time.Second, "CPU time of the in-process limit per app; 0 skips it")
	flag.DurationVar(&o.gobench, "gobench", 2*time.Second, "-benchtime of go test -bench ./proxy (master and worker CPU per request); 0 skips it")
	flag.DurationVar(&o.where, "where", 4*time.Second, "where the time goes, herd beside Granian: load per measure (CPU, perf stat, strace -c); 0 skips it")
	flag.IntVar(&o.workers, "workers", 2, "worker processes of every server")
	flag.StringVar(&o.herd, "herd", "bin/herd", "the herd binary")
	flag.StringVar(&o.venv, "venv", ".venv", "the venv of today's peers (make venv): herd's workers (--venv), Granian, gunicorn, uWSGI (pyuwsgi) and the in-process limit run on its Python")
	flag.StringVar(&o.report, "report", "", "also write the Markdown report (machine, commands, tables) to this file")
	flag.StringVar(&o.note, "note", "", "a sentence on the conditions of this run, printed above the figures")
	quick := flag.Bool("quick", false, "quick mode: herd, Granian, uwsgi --http-socket, gunicorn sync and Go on hello, 16 connections, 1 round of 3 s")
	goHello := flag.String("go-hello", "", "internal: serve the Go net/http hello limit on this address")
	flag.Parse()
	if *goHello != "" {
		if err := serveGoHello(*goHello); err != nil {
			fmt.Fprintln(os.Stderr, "go-hello:", err)
			os.Exit(1)
		}
		return
	}
	if *quick {
		// Quick mode changes the defaults; flags given explicitly still win.
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quickDefaults := map[string]string{"servers": "herd,granian,uwsgi-http-socket,gunicorn-sync,go-hello", "apps": "hello",
			"conns": "16", "rounds": "1", "duration": "3s", "mixed": "0s", "inproc": "0s", "gobench": "0s", "where": "0s"}
		for name, value := range quickDefaults {
			if !set[name] {
				_ = flag.Set(name, value)
			}
		}
	}
	code := 0
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		code = 1
	}
	os.Exit(code)
}

func run(o options) error {
	p := plan{rounds: o.rounds, duration: o.duration, warmup: o.warmup, mixed: o.mixed, inproc: o.inproc,
		gobench: o.gobench, where: o.where,
		log: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }}
	var err error
	if p.servers, err = pickServers(o.servers, o.debian); err != nil {
		return err
	}
	if p.apps, err = pickApps(o.apps); err != nil {
		return err
	}
	if p.conns, err = parseConns(o.conns); err != nil {
		return err
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	e, cleanup, err := newEnv(root, o.herd, o.venv, o.workers)
	if err != nil {
		return err
	}
	defer cleanup()
	e.debian = o.debian || usesDebian(p.servers)

	// The trap: Ctrl-C or SIGTERM stops every process started so far, by PID, then exits.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		select {
		case s := <-sigs:
			p.log("bench: %v: stopping every server", s)
			cancel()
			running.stopAll()
		case <-ctx.Done():
		}
	}()
	defer running.stopAll()

	machine := describeMachine(e)
	res, err := measure(ctx, e, p)
	if err != nil {
		return err
	}
	doc := renderReport(e, p, machine, res, o.note)
	fmt.Print(doc)
	if o.report != "" {
		doc += keptTail(o.report)
		if err := os.WriteFile(o.report, []byte(doc), 0o644); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
		p.log("bench: report written to %s", o.report)
	}
	return nil
}

// keptMarker starts the hand-written part of a report (profiles and what they explain): a
// new run replaces the figures above it and keeps the report from the marker on.
const keptMarker = "<!-- make bench keeps everything below this line: written by hand -->"

// keptTail is the hand-written part of the report at path, or "".
func keptTail(path string) string {
	old, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if i := strings.Index(string(old), keptMarker); i >= 0 {
		return "\n" + string(old[i:])
	}
	return ""
}

// newEnv checks the tools and makes the run's private directory.
func newEnv(root, herd, venv string, workers int) (*env, func(), error) {
	herd, err := filepath.Abs(herd)
	if err != nil {
		return nil, nil, err
	}
	if venv, err = filepath.Abs(venv); err != nil {
		return nil, nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("find this program: %w", err)
	}
	if _, err := os.Stat(filepath.Join(root, "bench", "apps", "hello.py")); err != nil {
		return nil, nil, fmt.Errorf("run from the repository's top directory: %w", err)
	}
	for _, tool := range []string{"python", "granian", "gunicorn", "uwsgi"} {
		if _, err := os.Stat(filepath.Join(venv, "bin", tool)); err != nil {
			return nil, nil, fmt.Errorf("the venv of today's peers at %s has no bin/%s: make venv builds it", venv, tool)
		}
	}
	tmp, err := os.MkdirTemp("", "herd-bench-")
	if err != nil {
		return nil, nil, err
	}
	e := &env{root: root, herd: herd, venv: venv, python: filepath.Join(venv, "bin", "python"),
		debianPython: "/usr/bin/python3", tmp: tmp, self: self, workers: workers,
		herdUwsgi: detectUwsgiSocket(herd), commands: make(map[string][]string)}
	return e, func() { os.RemoveAll(tmp) }, nil
}

func serverKeys() string {
	keys := make([]string, len(allServers))
	for i, s := range allServers {
		keys[i] = s.key
		if s.extra || s.debian {
			keys[i] += " (extra)"
		}
	}
	return strings.Join(keys, ", ")
}

// pickServers is the -servers list, or by default every server not marked extra; -debian
// adds Debian's older peers either way.
func pickServers(list string, debian bool) ([]server, error) {
	out, err := pick(list, allServers, func(s server) string { return s.key },
		func(s server) bool { return !s.extra && !s.debian }, "server", serverKeys())
	if err != nil || !debian {
		return out, err
	}
	for _, s := range allServers {
		if s.debian && !slices.ContainsFunc(out, func(o server) bool { return o.key == s.key }) {
			out = append(out, s)
		}
	}
	return out, nil
}

// usesDebian says whether a server of the run is one of Debian's older peers.
func usesDebian(servers []server) bool {
	return slices.ContainsFunc(servers, func(s server) bool { return s.debian })
}

func pickApps(list string) ([]app, error) {
	return pick(list, allApps, func(a app) string { return a.name }, func(a app) bool { return !a.extra },
		"app", "hello, flask, django, get64k, post1m, static1k, static64k")
}

// pick is the items of all named in the comma-separated list, in its order, or when the
// list is empty every item that runs by default.
func pick[T any](list string, all []T, name func(T) string, byDefault func(T) bool, what, known string) ([]T, error) {
	var out []T
	if list == "" {
		for _, x := range all {
			if byDefault(x) {
				out = append(out, x)
			}
		}
		return out, nil
	}
	for _, k := range strings.Split(list, ",") {
		i := slices.IndexFunc(all, func(x T) bool { return name(x) == strings.TrimSpace(k) })
		if i < 0 {
			return nil, fmt.Errorf("unknown %s %q (known: %s)", what, k, known)
		}
		out = append(out, all[i])
	}
	return out, nil
}

func parseConns(list string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(list, ",") {
		var n int
		if _, err := fmt.Sscanf(strings.TrimSpace(f), "%d", &n); err != nil || n < 1 {
			return nil, fmt.Errorf("bad connection count %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// measure runs the plan: per round, per app, every server in turn (the order rotates by
// round, so no server always runs first or after the same neighbour), each started, warmed,
// loaded at every connection count, and stopped; then the mixed run, in rounds too, and the
// limits.
func measure(ctx context.Context, e *env, p plan) (*results, error) {
	res := newResults()
	for round := 0; round < p.rounds; round++ {
		for _, a := range p.apps {
			for i := range p.servers {
				s := p.servers[(i+round)%len(p.servers)]
				if !s.runs(a) {
					continue
				}
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				if err := measureOne(ctx, e, p, s, a, round, res); err != nil {
					return nil, err
				}
			}
		}
	}
	if err := measureMixed(ctx, e, p, res); err != nil {
		return nil, err
	}
	if p.inproc > 0 {
		for _, a := range p.apps {
			r, err := runInproc(e, a, p.inproc)
			if err != nil {
				return nil, err
			}
			res.inproc[a.name] = r
			p.log("bench: in-process %s: %.0f calls/s per core (%.2f us per call)", a.name, r.CallsPerCoreSecond, r.UsPerCall)
		}
	}
	if p.gobench > 0 {
		lines, err := runGoBench(ctx, e, p.gobench)
		if err != nil {
			return nil, err
		}
		res.gobench = lines
	}
	var err error
	res.where, err = measureWhere(ctx, e, p, res)
	return res, err
}

// measureOne starts one server with one app and loads it at every connection count.
func measureOne(ctx context.Context, e *env, p plan, s server, a app, round int, res *results) error {
	script, err := writeWrkScript(e.tmp, a)
	if err != nil {
		return err
	}
	inst, err := s.launch(e, a)
	if err != nil && ctx.Err() != nil {
		return ctx.Err() // interrupted: the server was stopped under the launch
	}
	var na notAvailable
	if errors.As(err, &na) {
		for _, c := range p.conns {
			res.na[cell{a.name, c, s.key}] = err.Error()
		}
		return nil
	}
	if err != nil {
		return err
	}
	defer inst.stop()
	if p.warmup > 0 {
		if _, err := runWrk(ctx, wrkArgs(script, p.conns[0], p.warmup, inst.url)); err != nil {
			return fmt.Errorf("warm-up of %s: %w", s.key, err)
		}
	}
	for _, c := range p.conns {
		smp, err := loadOnce(ctx, inst, wrkArgs(script, c, p.duration, inst.url))
		if err != nil {
			return fmt.Errorf("%s, %s, %d connections: %w", s.key, a.name, c, err)
		}
		smp.startup = inst.startup
		res.samples[cell{a.name, c, s.key}] = append(res.samples[cell{a.name, c, s.key}], smp)
		p.log("bench: round %d %-7s c%-4d %-18s %9.0f req/s  p50 %-9v p99 %-9v RSS %5.1f MiB  CPU %v/req  start %v  errors %v",
			round+1, a.name, c, s.key, smp.rps(), smp.p50, smp.p99, mib(smp.rssTotal),
			smp.cpuPerReq.Round(100*time.Nanosecond), smp.startup.Round(time.Millisecond), smp.errs)
	}
	return nil
}

// loadOnce runs one wrk load against inst, sampling the server's processes while it runs:
// their CPU time before and after, and the largest RSS seen.
func loadOnce(ctx context.Context, inst *instance, args []string) (sample, error) {
	before := observeAll(inst)
	stopSampling := make(chan struct{})
	sampled := make(chan [2]int64)
	go func() {
		var maxTotal, maxRoot int64
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			s := observeAll(inst)
			maxTotal, maxRoot = max(maxTotal, s.rssBytes), max(maxRoot, s.rootRSS)
			select {
			case <-stopSampling:
				sampled <- [2]int64{maxTotal, maxRoot}
				return
			case <-tick.C:
			}
		}
	}()
	l, err := runWrk(ctx, args)
	close(stopSampling)
	rss := <-sampled
	if err != nil {
		return sample{}, err
	}
	after := observeAll(inst)
	smp := sample{load: l, rssTotal: rss[0], rssRoot: rss[1]}
	if l.requests > 0 && after.cpuTicks >= before.cpuTicks {
		cpu := time.Duration(after.cpuTicks-before.cpuTicks) * time.Second / clockTicks
		smp.cpuPerReq = cpu / time.Duration(l.requests)
	}
	return smp, nil
}

// observeAll sums the process trees of every process of a server.
func observeAll(inst *instance) treeSample {
	var sum treeSample
	for _, p := range inst.procs {
		s := p.observe()
		sum.cpuTicks += s.cpuTicks
		sum.rssBytes += s.rssBytes
		sum.rootRSS += s.rootRSS
	}
	return sum
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
