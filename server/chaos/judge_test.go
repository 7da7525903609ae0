package chaos

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// fullStrengthWithin is the bound: after a fault, the pool is back at the wanted
// number of serving workers within it. make chaos judges by it.
const fullStrengthWithin = 2 * time.Second

// reactionWithin bounds herd's own share of a recovery: from the fault (or, for a hung
// worker, its timeout) to the spawn of the replacement. The short form in make test judges
// by it rather than by fullStrengthWithin, because the rest of a recovery is the Python
// boot, which takes 1 to 3 s on two cores shared by several test suites and 0.1 to 0.3 s
// on a quiet machine: a bound on it would test the machine, not herd.
const reactionWithin = time.Second

// fault is one fault a scenario caused.
type fault struct {
	pid int       // the worker hit; 0 for a fault of the whole pool (a reload)
	at  time.Time // when it was injected
	// from is when the outage starts counting: when herd can first know (the --timeout
	// expiry for a stopped worker); zero means at.
	from time.Time
	// graceful faults (a reload, an RSS recycle) must cost no request at all: failures on
	// their worker are not excused.
	graceful bool
}

func (f fault) start() time.Time {
	if f.from.IsZero() {
		return f.at
	}
	return f.from
}

// result is what one scenario showed.
type result struct {
	name, what string
	sent       int
	failed     int
	excused    []string // failures that were in flight on a worker hit by a fault
	unexcused  []string // every other failure: each one fails the scenario
	faults     int
	recoveries []time.Duration
	// reactions and boots split the recoveries of faults that hit a worker: herd's time
	// to spawn the replacement, and the replacement's boot as herd measured it.
	reactions, boots []time.Duration
	// unrecovered counts faults after which the pool was never seen at full strength.
	unrecovered int
	minServing  int
	problems    []string // anything else that fails the scenario
	notes       []string // what else the report should say
}

func maxOf(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return slices.Max(ds)
}

func (r *result) maxRecovery() time.Duration { return maxOf(r.recoveries) }

// pass is the verdict (make chaos): nothing failed that was not in flight on a
// faulted worker, and the pool was whole again within fullStrengthWithin after each fault.
func (r *result) pass() bool {
	return r.passShort() && r.maxRecovery() <= fullStrengthWithin
}

// passShort is the verdict of the short form in make test: the same, except that herd's
// reaction, not the Python boot after it, is what is bounded (see reactionWithin).
func (r *result) passShort() bool {
	return r.sent > 0 && r.faults > 0 && len(r.unexcused) == 0 && r.unrecovered == 0 &&
		maxOf(r.reactions) <= reactionWithin && len(r.problems) == 0
}

// judge classifies every failed request and measures each fault's recovery.
//
// A failure is excused when the access log (or the answer's X-Worker-Pid) puts it on a
// worker that a non-graceful fault hit, and it had not ended before that fault: it was in
// flight there. Recovery is the time from the fault's start to the first /stats sample that
// shows the wanted number of serving workers, not counting those hit so far.
func judge(r *result, h *herdtest.Instance, outcomes []outcome, samples []strengthSample, faults []fault, workers int) {
	pids := workerPids(h)
	onWorker := accessWorkers(h)
	hitAt := map[int]time.Time{}  // every worker hit, graceful or not
	lostAt := map[int]time.Time{} // the workers lost to a fault that is not graceful
	excuseBy := map[int]fault{}   // the fault that excuses failures on a worker
	for _, f := range faults {
		if f.pid == 0 {
			continue
		}
		if at, ok := hitAt[f.pid]; !ok || f.at.Before(at) {
			hitAt[f.pid] = f.at
		}
		if !f.graceful {
			if at, ok := lostAt[f.pid]; !ok || f.at.Before(at) {
				lostAt[f.pid] = f.at
				excuseBy[f.pid] = f
			}
		}
	}
	r.sent += len(outcomes)
	r.faults += len(faults)
	for _, o := range outcomes {
		if o.failure == "" {
			continue
		}
		r.failed++
		pid, how := o.pid, "X-Worker-Pid"
		if id, ok := onWorker[o.path]; ok && id >= 0 {
			pid, how = pids[id], fmt.Sprintf("access log: worker %d", id)
		} else if ok {
			how = "access log: no worker"
		} else if pid == 0 {
			how = "not in the access log"
		}
		line := fmt.Sprintf("%s %s at +%s: %s [pid %d, %s]", o.kind, o.path, o.start.Sub(faultsStart(faults, o.start)).Round(time.Millisecond), shortReason(o.failure), pid, how)
		if f, ok := excuseBy[pid]; ok && pid != 0 && !o.end.Before(f.at) && !o.start.After(f.start()) {
			r.excused = append(r.excused, line+" in flight on the faulted worker")
		} else {
			r.unexcused = append(r.unexcused, line)
		}
	}
	// A graceful fault keeps its worker serving until the replacement is ready: capacity
	// must never drop for one. Workers lost to the other faults do not count as serving.
	r.minServing = -1
	for _, s := range samples {
		n := servingAt(s, lostAt)
		if r.minServing < 0 || n < r.minServing {
			r.minServing = n
		}
	}
	if len(lostAt) == 0 && r.minServing < workers {
		r.problems = append(r.problems, fmt.Sprintf("only %d of %d workers serving at one point, though every fault was graceful", r.minServing, workers))
	}
	r.reactions, r.boots = splitRecoveries(h, faults)
	for _, f := range faults {
		start := f.start()
		found := false
		for _, s := range samples {
			if s.at.Before(start) {
				continue
			}
			if servingAt(s, hitAt) >= workers {
				r.recoveries = append(r.recoveries, s.at.Sub(start))
				found = true
				break
			}
		}
		if !found {
			r.unrecovered++
		}
	}
}

// splitRecoveries pairs each fault that hit a worker with the replacement herd started for
// it (the first worker, in order, spawned after the fault's start: spawn time = its ready
// time - its boot) and returns herd's reaction and that worker's boot for each.
func splitRecoveries(h *herdtest.Instance, faults []fault) (reactions, boots []time.Duration) {
	type spawned struct {
		at   time.Time
		boot time.Duration
	}
	var ready []spawned
	for _, ev := range h.Events() {
		if ms, ok := ev["boot_ms"].(float64); ok && ev.Msg() == "worker ready" {
			boot := time.Duration(ms * float64(time.Millisecond))
			ready = append(ready, spawned{at: eventTime(ev, time.Time{}).Add(-boot), boot: boot})
		}
	}
	slices.SortFunc(ready, func(a, b spawned) int { return a.at.Compare(b.at) })
	hits := slices.DeleteFunc(slices.Clone(faults), func(f fault) bool { return f.pid == 0 })
	slices.SortFunc(hits, func(a, b fault) int { return a.at.Compare(b.at) })
	// Paired from the injection, not from when the outage counts: herd may replace a worker
	// that ended itself before the client sees its request fail. The slack: the supervisor
	// takes its step's time (a spawn's start) before it logs the fault it acts on, and the
	// two can be far apart on a loaded machine.
	const clockSlack = 250 * time.Millisecond
	next := 0
	for _, f := range hits {
		for next < len(ready) && ready[next].at.Before(f.at.Add(-clockSlack)) {
			next++
		}
		if next == len(ready) {
			break
		}
		reactions = append(reactions, max(0, ready[next].at.Sub(f.start())))
		boots = append(boots, ready[next].boot)
		next++
	}
	return reactions, boots
}

// servingAt counts the workers serving in a sample, leaving out those hit by a fault by then.
func servingAt(s strengthSample, hitAt map[int]time.Time) int {
	n := 0
	for _, pid := range s.pids {
		if at, hit := hitAt[pid]; hit && !at.After(s.at) {
			continue
		}
		n++
	}
	return n
}

// faultsStart is the first fault's time (t when there is none): failures are shown
// relative to it.
func faultsStart(faults []fault, t time.Time) time.Time {
	for _, f := range faults {
		if f.at.Before(t) {
			t = f.at
		}
	}
	return t
}

// table prints the results as a Markdown table; the pass column is the verdict of this
// form (make chaos: the issue's; the short form: passShort).
func table(results []*result) string {
	var b strings.Builder
	b.WriteString("| scenario | requests | failed | in flight on a faulted worker | other failures | faults | back to full strength (max) | herd's reaction (max) | Python boot (max) | fewest serving | pass |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		verdict := "yes"
		if full() && !r.pass() || !full() && !r.passShort() {
			verdict = "**NO**"
		}
		recovery := r.maxRecovery().Round(time.Millisecond).String()
		if r.unrecovered > 0 {
			recovery = fmt.Sprintf("never, %d times", r.unrecovered)
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %s | %s | %s | %d | %s |\n", r.name, r.sent, r.failed, len(r.excused),
			len(r.unexcused), r.faults, recovery, orDash(r.reactions), orDash(r.boots), r.minServing, verdict)
	}
	return b.String()
}

// details lists each scenario's failures and problems.
func details(results []*result) string {
	var b strings.Builder
	for _, r := range results {
		fmt.Fprintf(&b, "\n**%s**: %s\n", r.name, r.what)
		if len(r.recoveries) > 0 {
			fmt.Fprintf(&b, "- back to full strength after each fault: %s\n", durations(r.recoveries))
		}
		if len(r.reactions) > 0 {
			fmt.Fprintf(&b, "- herd's reaction (fault to replacement spawned): %s; the replacement's boot: %s\n", durations(r.reactions), durations(r.boots))
		}
		for _, n := range r.notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
		for _, p := range r.problems {
			fmt.Fprintf(&b, "- PROBLEM: %s\n", p)
		}
		for _, l := range r.unexcused {
			fmt.Fprintf(&b, "- FAILED, not excused: %s\n", l)
		}
		for _, l := range r.excused {
			fmt.Fprintf(&b, "- failed: %s\n", l)
		}
	}
	return b.String()
}

func orDash(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	return maxOf(ds).Round(time.Millisecond).String()
}

func durations(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = fmt.Sprintf("%.0f", float64(d)/float64(time.Millisecond))
	}
	return strings.Join(parts, ", ") + " ms"
}
