package chaos

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

var (
	chaosTime   = flag.Duration("chaos.time", 0, "how long each timed fault goes on (make chaos: 30s); 0 is the short form that make test runs")
	chaosReport = flag.String("chaos.report", "", "rewrite the chaos section of this Markdown file (docs/RELIABILITY.md)")
	chaosNote   = flag.String("chaos.note", "", "a sentence on what else ran on the machine, for the report")
)

// full reports whether this is make chaos rather than the short form.
func full() bool { return *chaosTime > 0 }

// span is how long a timed fault goes on: -chaos.time, or short in make test.
func span(short time.Duration) time.Duration {
	if full() {
		return *chaosTime
	}
	return short
}

// loadPause is each client's pause between two requests: none in make chaos; in the short
// form 10 ms, so that a steady load (some hundreds of requests a second) does not also take
// both cores from the rest of make test.
func loadPause() time.Duration {
	if full() {
		return 0
	}
	return 10 * time.Millisecond
}

// steadyMixes is the chaos load: four clients sending small requests without pause, and
// one with 64 KiB POST bodies.
var steadyMixes = [][]kind{{kindHello}, {kindHello}, {kindHello}, {kindSlow}, {kindPost}}

// scenario is one fault under load. run injects the faults and returns them; the load and
// the /stats watcher run around it.
type scenario struct {
	name    string
	what    string
	workers int
	args    []string
	mixes   [][]kind
	run     func(t *testing.T, h *herdtest.Instance, r *result) []fault
}

func scenarios() []scenario {
	return []scenario{
		{name: "a. SIGKILL", workers: 4, run: killEverySecond,
			what: fmt.Sprintf("a random serving worker SIGKILLed every second for %s, 4 workers", span(4*time.Second))},
		{name: "b. SIGSTOP", workers: 2, args: []string{"--timeout", stopTimeout().String()}, run: stopPastTimeout,
			what: fmt.Sprintf("a serving worker SIGSTOPped and left stopped (herd must kill it), --timeout %s, %d round(s), 2 workers", stopTimeout(), stopRounds())},
		{name: "c. SIGHUP", workers: 2, run: reloads,
			what: fmt.Sprintf("%d SIGHUP reloads one after another, each waited for, 2 workers", reloadCount())},
		{name: "d. leak + --reload-on-rss", workers: 2, args: []string{"--reload-on-rss", strconv.Itoa(rssLimitMiB)}, run: leakUntilRecycled,
			mixes: append([][]kind{{kindLeak}}, steadyMixes...),
			what:  fmt.Sprintf("one client leaks 4 MiB per request (every 100 ms) for %s, --reload-on-rss %d, 2 workers", span(5*time.Second), rssLimitMiB)},
		{name: "e. os._exit mid-response", workers: 2, run: exitMidResponse,
			what: fmt.Sprintf("a request whose app writes part of its body then calls os._exit(7), every second for %s, alternately with a Content-Length and streamed; 2 workers", span(3*time.Second))},
	}
}

func stopTimeout() time.Duration {
	if full() {
		return 2 * time.Second
	}
	return time.Second
}

func stopRounds() int {
	if full() {
		return 5
	}
	return 1
}

func reloadCount() int {
	if full() {
		return 20
	}
	return 3
}

// rssLimitMiB is well above an idle worker (~15 MiB) and reached after a few leaks.
const rssLimitMiB = 48

// TestChaos runs every scenario under load: the short form in make test, 30 s per fault in
// make chaos. Each fails when a request failed that was not in flight on the faulted
// worker, or when the pool took more than 2 s to be back at full strength.
func TestChaos(t *testing.T) {
	startNote := machineNote()
	var results []*result
	for _, sc := range scenarios() {
		r := &result{name: sc.name, what: sc.what}
		results = append(results, r)
		t.Run(strings.Fields(sc.name)[1], func(t *testing.T) {
			runScenario(t, sc, r)
			if full() && !r.pass() || !r.passShort() {
				t.Errorf("%s failed:\n%s%s", sc.name, table([]*result{r}), details([]*result{r}))
			}
		})
	}
	out := table(results) + details(results)
	fmt.Println(out)
	if *chaosReport != "" {
		report := chaosReportText(out, startNote, machineNote(), commitNote(t))
		if err := writeSection(t, *chaosReport, "chaos", report); err != nil {
			t.Fatal(err)
		}
	}
}

func runScenario(t *testing.T, sc scenario, r *result) {
	h := startHerd(t, sc.workers, sc.args...)
	mixes := sc.mixes
	if mixes == nil {
		mixes = steadyMixes
	}
	w := watch(h, 20*time.Millisecond)
	ld := startLoad(h.URL, true, loadPause(), mixes...)
	waitRequests(t, ld, 20) // the load is on before the first fault
	faults := sc.run(t, h, r)
	// The load goes on until the pool is whole again and a little after, so that the
	// requests sent right after the last fault are judged too.
	settle(t, h, w, ld, sc.workers, faults)
	outcomes := ld.finish()
	samples := w.finish()
	judge(r, h, outcomes, samples, faults, sc.workers)
	if !r.pass() || !r.passShort() {
		logLifecycle(t, h)
	}
	t.Logf("%s: %d requests, %d failed (%d in flight on a faulted worker), %d faults, back to full strength in at most %s",
		sc.name, r.sent, r.failed, len(r.excused), r.faults, r.maxRecovery())
}

func waitRequests(t *testing.T, ld *load, n int) {
	t.Helper()
	herdtest.Eventually(t, 30*time.Second, fmt.Sprintf("%d requests sent", n), func() bool {
		sent, _ := ld.counts()
		return sent >= n
	})
}

// settle waits until /stats shows the wanted number of serving workers none of which was
// hit; then until the watcher has sampled the whole pool too, and the load has sent a few
// requests to it, so that the requests sent right after the last fault are judged as well.
func settle(t *testing.T, h *herdtest.Instance, w *watcher, ld *load, workers int, faults []fault) {
	t.Helper()
	hit := map[int]time.Time{}
	for _, f := range faults {
		hit[f.pid] = f.at
	}
	var pids []int
	var err error
	if !herdtest.Poll(20*time.Second, func() bool {
		pids, err = servingPids(h, hit)
		return err == nil && len(pids) >= workers
	}) {
		t.Errorf("the pool is not back at %d serving workers 20s after the last fault (serving: %v, %v)", workers, pids, err)
		return
	}
	// The second sample from now was surely taken after the pool was whole.
	samples := w.count() + 2
	sent, _ := ld.counts()
	if !herdtest.Poll(30*time.Second, func() bool {
		now, _ := ld.counts()
		return now >= sent+50 && w.count() >= samples
	}) {
		now, _ := ld.counts()
		t.Errorf("30s after the pool was whole: %d requests sent since, %d of 2 samples taken", now-sent, w.count()-samples+2)
	}
}

// killEverySecond: a. SIGKILL a random serving worker every second.
func killEverySecond(t *testing.T, h *herdtest.Instance, r *result) []fault {
	var faults []fault
	hit := map[int]time.Time{}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for end := time.Now().Add(span(4 * time.Second)); time.Now().Before(end); <-tick.C {
		pids, err := servingPids(h, hit)
		if err != nil || len(pids) == 0 {
			r.problems = append(r.problems, fmt.Sprintf("no serving worker to kill: %v", err))
			continue
		}
		pid := pids[rand.IntN(len(pids))]
		at := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill %d: %v", pid, err)
		}
		hit[pid] = at
		faults = append(faults, fault{pid: pid, at: at})
	}
	return faults
}

// stopPastTimeout: b. SIGSTOP a serving worker and leave it stopped: the request it holds
// (or the next it is given) overruns --timeout, gets 504, and herd must kill the worker
// (SIGABRT stays pending in a stopped process; the SIGKILL that follows it does not) and
// start another. The outage counts from herd's "request timed out", the first moment it
// can know.
func stopPastTimeout(t *testing.T, h *herdtest.Instance, r *result) []fault {
	var faults []fault
	hit := map[int]time.Time{}
	for range stopRounds() {
		pids, err := servingPids(h, hit)
		if err != nil || len(pids) == 0 {
			r.problems = append(r.problems, fmt.Sprintf("no serving worker to stop: %v", err))
			continue
		}
		pid := pids[rand.IntN(len(pids))]
		from := len(h.Events())
		at := time.Now()
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatalf("stop %d: %v", pid, err)
		}
		hit[pid] = at
		f := fault{pid: pid, at: at}
		ev, _, ok := h.WaitEvent(from, stopTimeout()+15*time.Second, func(e herdtest.Event) bool {
			return e.Msg() == "request timed out: the worker's stacks follow, then it is killed and replaced" && e.Int("pid") == pid
		})
		if !ok {
			r.problems = append(r.problems, fmt.Sprintf("worker %d stopped %s ago: herd never timed it out", pid, time.Since(at).Round(time.Millisecond)))
			_ = syscall.Kill(pid, syscall.SIGKILL)
			faults = append(faults, f)
			continue
		}
		f.from = eventTime(ev, time.Now())
		faults = append(faults, f)
		// herd kills it: SIGKILL follows the SIGABRT after a 2 s grace.
		if !herdtest.Poll(10*time.Second, func() bool { return !herdtest.Alive(pid) }) {
			r.problems = append(r.problems, fmt.Sprintf("the stopped worker %d still lives 10s after it timed out", pid))
			_ = syscall.Kill(pid, syscall.SIGKILL)
		} else {
			t.Logf("stopped worker %d: timed out %s after SIGSTOP, gone %s after that", pid,
				f.from.Sub(at).Round(time.Millisecond), time.Since(f.from).Round(time.Millisecond))
		}
	}
	return faults
}

// reloads: c. SIGHUP reloads one after another, each waited for.
func reloads(t *testing.T, h *herdtest.Instance, r *result) []fault {
	var faults []fault
	for range reloadCount() {
		from := len(h.Events())
		at := time.Now()
		h.Signal(syscall.SIGHUP)
		ev, _, ok := h.WaitEvent(from, 60*time.Second, func(e herdtest.Event) bool {
			return e.Msg() == "reload done" || strings.HasPrefix(e.Msg(), "reload failed")
		})
		faults = append(faults, fault{at: at, graceful: true})
		switch {
		case !ok:
			r.problems = append(r.problems, "a reload did not end within 60s")
		case ev.Msg() != "reload done":
			r.problems = append(r.problems, "a reload failed: "+ev.Msg())
		}
	}
	return faults
}

// leakUntilRecycled: d. the leak client grows the workers' memory until --reload-on-rss
// recycles them; a recycle is graceful, so no request may fail.
func leakUntilRecycled(t *testing.T, h *herdtest.Instance, r *result) []fault {
	from := len(h.Events())
	// A timed fault: the leak goes on for its span, and each recycle it causes in that time
	// is judged.
	time.Sleep(span(5 * time.Second))
	var faults []fault
	for _, ev := range h.Events()[from:] {
		if ev.Msg() == "worker exceeds --reload-on-rss: replacing it" {
			faults = append(faults, fault{pid: ev.Int("pid"), at: eventTime(ev, time.Now()), graceful: true})
		}
	}
	if len(faults) == 0 {
		r.problems = append(r.problems, "no worker was recycled for --reload-on-rss")
	}
	return faults
}

// exitMidResponse: e. requests to a route that writes part of its body and then calls
// os._exit(7). Each of them must fail (it is the fault); other requests must not.
func exitMidResponse(t *testing.T, h *herdtest.Instance, r *result) []fault {
	exiter := &load{base: h.URL, stop: make(chan struct{}), keep: true, client: herdtest.Client()}
	var sent []outcome
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for end := time.Now().Add(span(3 * time.Second)); time.Now().Before(end); <-tick.C {
		k := kind{name: "exit", query: "stream=" + strconv.Itoa(len(sent)%2), want: func([]byte) bool { return true }}
		sent = append(sent, exiter.send(k))
	}
	pids := workerPids(h)
	onWorker := accessWorkers(h)
	var faults []fault
	for _, o := range sent {
		id, ok := onWorker[o.path]
		if !ok || id < 0 {
			r.problems = append(r.problems, fmt.Sprintf("%s reached no worker: %s", o.path, o.failure))
			continue
		}
		// The worker exits while this request is in flight: it counts from its start, and
		// the pool's outage from when the client saw the failure.
		faults = append(faults, fault{pid: pids[id], at: o.start, from: o.end})
		r.notes = append(r.notes, fmt.Sprintf("the fault itself, %s?%s on worker %d (pid %d): %s", o.path, o.query, id, pids[id], shortReason(o.failure)))
		if o.failure == "" {
			r.problems = append(r.problems, o.path+" got a whole answer, though its worker exits mid-response")
		}
	}
	return faults
}

// logLifecycle shows the master's own events (no access lines, no worker output): what
// it did about each fault.
func logLifecycle(t *testing.T, h *herdtest.Instance) {
	var lines []string
	for _, ev := range h.Events() {
		if c := ev.Str("component"); c == "access" || c == "worker" {
			continue
		}
		var fields []string
		for _, k := range []string{"worker", "pid", "generation", "cause", "exit", "restart_in_ms", "deaths_in_a_row", "boot_ms", "status", "path", "error"} {
			if v, ok := ev[k]; ok {
				fields = append(fields, fmt.Sprintf("%s=%v", k, v))
			}
		}
		lines = append(lines, fmt.Sprintf("%s %s %s", ev.Str("time")[11:23], ev.Msg(), strings.Join(fields, " ")))
	}
	t.Logf("herd's lifecycle events:\n%s", strings.Join(lines, "\n"))
}

// eventTime is an event's own time stamp (RFC 3339 with nanoseconds), or fallback.
func eventTime(ev herdtest.Event, fallback time.Time) time.Time {
	if at, err := time.Parse(time.RFC3339Nano, ev.Str("time")); err == nil {
		return at
	}
	return fallback
}

func chaosReportText(out, startNote, endNote, commit string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Chaos\n\n")
	fmt.Fprintf(&b, "Run %s UTC with `make chaos CHAOS_TIME=%s` (`go test ./server/chaos -run '^TestChaos$' -v -args -chaos.time %s -chaos.report docs/RELIABILITY.md`), herd at %s.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04"), *chaosTime, *chaosTime, commit)
	fmt.Fprintf(&b, "Load: 5 keep-alive Go clients on loopback sending without pause (3 x GET hello, 1 x GET that sleeps 50 ms, 1 x POST of 64 KiB echoed back), each answer checked whole; "+
		"every request's path carries its own id, so herd's access log names the worker that had it, failed or not. "+
		"The master's /stats is polled every 20 ms for the workers serving (ready or busy), those hit by a fault not counted.\n\n")
	fmt.Fprintf(&b, "Pass = no failed request except those in flight on a worker a fault hit (graceful faults, reloads and RSS recycling, excuse none), "+
		"and after every fault the pool back at full strength within %s (for SIGSTOP: counted from herd's timeout, the first moment it can know; for os._exit: from the client's failure).\n\n", fullStrengthWithin)
	fmt.Fprintf(&b, "Machine: %s at the start, %s at the end.", startNote, endNote)
	if *chaosNote != "" {
		fmt.Fprintf(&b, " %s", *chaosNote)
	}
	b.WriteString("\n\n")
	b.WriteString(out)
	return b.String()
}
