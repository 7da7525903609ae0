// Command bench is herd's side-by-side benchmark (`make bench`): on one machine in one run it
// starts herd and its peers (uWSGI, gunicorn, nginx in front of either) on loopback, warms
// each, loads it with wrk, stops it, alternating servers and repeating rounds, and prints the
// medians with the ratios herd / peer. It also measures the limits: the same app called
// in-process (calls/s per core) and a bare Go net/http server. See docs/BENCHMARKS.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
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
	inproc   time.Duration // in-process limit: CPU seconds per app, 0 to skip
	gobench  time.Duration // -benchtime of the proxy's go test benchmarks, 0 to skip
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
	inproc  map[string]inprocResult
	gobench []string // the result lines of go test -bench ./proxy
}

func main() {
	var (
		quick    = flag.Bool("quick", false, "quick mode: herd, uwsgi --http-socket, gunicorn sync and Go on hello, 16 connections, 1 round of 3 s")
		servers  = flag.String("servers", "", "comma-separated servers to run (default all): "+serverKeys())
		apps     = flag.String("apps", "", "comma-separated apps (default hello,flask,django; also get64k, post1m, static1k, static64k)")
		conns    = flag.String("conns", "16,256", "comma-separated wrk connection counts")
		rounds   = flag.Int("rounds", 3, "rounds; every figure is the median over rounds")
		duration = flag.Duration("duration", 5*time.Second, "wrk duration per measured load (whole seconds)")
		warmup   = flag.Duration("warmup", time.Second, "wrk warm-up after each start, not measured")
		inproc   = flag.Duration("inproc", 2*time.Second, "CPU time of the in-process limit per app; 0 skips it")
		gobench  = flag.Duration("gobench", 2*time.Second, "-benchtime of go test -bench ./proxy (master and worker CPU per request); 0 skips it")
		workers  = flag.Int("workers", 2, "worker processes of every server")
		herd     = flag.String("herd", "bin/herd", "the herd binary")
		python   = flag.String("python", "/usr/bin/python3", "Python of every server (Debian's has Flask and Django)")
		report   = flag.String("report", "", "also write the Markdown report (machine, commands, tables) to this file")
		note     = flag.String("note", "", "a sentence on the conditions of this run, printed above the figures")
		goHello  = flag.String("go-hello", "", "internal: serve the Go net/http hello limit on this address")
	)
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
		quickDefaults := map[string]string{"servers": "herd,uwsgi-http-socket,gunicorn-sync,go-hello", "apps": "hello",
			"conns": "16", "rounds": "1", "duration": "3s", "inproc": "0s", "gobench": "0s"}
		for name, value := range quickDefaults {
			if !set[name] {
				_ = flag.Set(name, value)
			}
		}
	}
	code := 0
	if err := run(*servers, *apps, *conns, *rounds, *duration, *warmup, *inproc, *gobench, *workers, *herd, *python, *report, *note); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		code = 1
	}
	os.Exit(code)
}

func run(serverList, appList, connList string, rounds int, duration, warmup, inproc, gobench time.Duration,
	workers int, herd, python, reportPath, note string) error {
	p := plan{rounds: rounds, duration: duration, warmup: warmup, inproc: inproc, gobench: gobench,
		log: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }}
	var err error
	if p.servers, err = pickServers(serverList); err != nil {
		return err
	}
	if p.apps, err = pickApps(appList); err != nil {
		return err
	}
	if p.conns, err = parseConns(connList); err != nil {
		return err
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	e, cleanup, err := newEnv(root, herd, python, workers)
	if err != nil {
		return err
	}
	defer cleanup()

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
	doc := renderReport(e, p, machine, res, note)
	fmt.Print(doc)
	if reportPath != "" {
		doc += keptTail(reportPath)
		if err := os.WriteFile(reportPath, []byte(doc), 0o644); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
		p.log("bench: report written to %s", reportPath)
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
func newEnv(root, herd, python string, workers int) (*env, func(), error) {
	herd, err := filepath.Abs(herd)
	if err != nil {
		return nil, nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("find this program: %w", err)
	}
	if _, err := os.Stat(filepath.Join(root, "bench", "apps", "hello.py")); err != nil {
		return nil, nil, fmt.Errorf("run from the repository's top directory: %w", err)
	}
	tmp, err := os.MkdirTemp("", "herd-bench-")
	if err != nil {
		return nil, nil, err
	}
	e := &env{root: root, herd: herd, python: python, tmp: tmp, self: self, workers: workers,
		herdUwsgi: detectUwsgiSocket(herd), commands: make(map[string][]string)}
	return e, func() { os.RemoveAll(tmp) }, nil
}

func serverKeys() string {
	keys := make([]string, len(allServers))
	for i, s := range allServers {
		keys[i] = s.key
	}
	return strings.Join(keys, ",")
}

func pickServers(list string) ([]server, error) {
	if list == "" {
		return allServers, nil
	}
	var out []server
	for _, k := range strings.Split(list, ",") {
		found := false
		for _, s := range allServers {
			if s.key == strings.TrimSpace(k) {
				out, found = append(out, s), true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown server %q (known: %s)", k, serverKeys())
		}
	}
	return out, nil
}

func pickApps(list string) ([]app, error) {
	var out []app
	if list == "" {
		for _, a := range allApps {
			if !a.extra {
				out = append(out, a)
			}
		}
		return out, nil
	}
	for _, k := range strings.Split(list, ",") {
		found := false
		for _, a := range allApps {
			if a.name == strings.TrimSpace(k) {
				out, found = append(out, a), true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown app %q (known: hello, flask, django, get64k, post1m, static1k, static64k)", k)
		}
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
// loaded at every connection count, and stopped.
func measure(ctx context.Context, e *env, p plan) (*results, error) {
	res := &results{samples: make(map[cell][]sample), na: make(map[cell]string), inproc: make(map[string]inprocResult)}
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
	return res, nil
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
