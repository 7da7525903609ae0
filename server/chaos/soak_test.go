package chaos

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

var (
	soakDuration    = flag.Duration("soak.duration", 30*time.Minute, "how long BenchmarkSoak runs")
	soakSampleEvery = flag.Duration("soak.sample", 10*time.Second, "how often the master's RSS, fds and goroutines are sampled")
	soakReloadEvery = flag.Duration("soak.reload-every", time.Minute, "how often the soak sends SIGHUP")
	soakKillEvery   = flag.Duration("soak.kill-every", 20*time.Second, "how often the soak SIGKILLs a random worker")
	soakReport      = flag.String("soak.report", "", "rewrite the soak section of this Markdown file (docs/RELIABILITY.md)")
	soakNote        = flag.String("soak.note", "", "a sentence on what else ran on the machine, for the report")
)

// soakSample is one look at the master.
type soakSample struct {
	at         time.Duration // since the load started
	rss        int64
	fds        int
	goroutines int
}

// series is one resource over the soak, and the rule that calls it flat: the mean of the
// last window is at most the mean of the first window plus 10% plus a small absolute slack
// (a few fds or goroutines of connections that happen to be open, GC timing for RSS).
type series struct {
	name   string
	unit   string
	slack  float64
	values []float64
}

type flatness struct {
	first, last, most       float64
	firstMean, lastMean     float64
	limit                   float64
	flat                    bool
	firstWindow, lastWindow int // samples in each window
}

func (s series) judge(samples []soakSample, window time.Duration) flatness {
	var f flatness
	end := samples[len(samples)-1].at
	var sumFirst, sumLast float64
	for i, v := range s.values {
		if i == 0 || v > f.most {
			f.most = v
		}
		if samples[i].at <= window {
			sumFirst += v
			f.firstWindow++
		}
		if samples[i].at >= end-window {
			sumLast += v
			f.lastWindow++
		}
	}
	f.first, f.last = s.values[0], s.values[len(s.values)-1]
	f.firstMean, f.lastMean = sumFirst/float64(f.firstWindow), sumLast/float64(f.lastWindow)
	f.limit = f.firstMean*1.10 + s.slack
	f.flat = f.lastMean <= f.limit
	return f
}

// BenchmarkSoak (make soak) serves mixed load (hello, 50 ms sleeps, 1 MiB responses, 64 KiB
// POST bodies) for -soak.duration, with a SIGHUP reload every minute and a random worker
// SIGKILLed every 20 s, and samples the master's RSS, open fds and goroutines every 10 s.
// It is a benchmark only so that make test does not run it; b.N is ignored (-benchtime 1x).
func BenchmarkSoak(b *testing.B) {
	const workers = 4
	h := startHerd(b, workers, "--access-log", "off")
	master := h.Cmd.Process.Pid
	mixes := [][]kind{
		{kindHello}, {kindHello}, {kindHello},
		{kindSlow}, {kindSlow},
		{kindLarge},
		{kindPost}, {kindPost, kindHello, kindLarge},
	}
	startNote := commitNote(b) + "; " + machineNote()
	ld := startLoad(h.URL, false, 0, mixes...)
	start := time.Now()
	var samples []soakSample
	reloads, kills, sampleErrors := 0, 0, 0
	killed := map[int]time.Time{}
	sample := time.NewTicker(*soakSampleEvery)
	defer sample.Stop()
	reload := time.NewTicker(*soakReloadEvery)
	defer reload.Stop()
	kill := time.NewTicker(*soakKillEvery)
	defer kill.Stop()
	deadline := time.After(*soakDuration)
	takeSample := func() {
		ps, err := sampleProc(master)
		g, gerr := metric(h, "go_goroutines")
		if err != nil || gerr != nil {
			sampleErrors++
			b.Logf("sample: %v %v", err, gerr)
			return
		}
		s := soakSample{at: time.Since(start), rss: ps.rss, fds: ps.fds, goroutines: int(g)}
		samples = append(samples, s)
		sent, failed := ld.counts()
		b.Logf("%6s rss %5.1f MiB  fds %3d  goroutines %3d  requests %d (failed %d)  reloads %d  kills %d",
			s.at.Round(time.Second), float64(s.rss)/(1<<20), s.fds, s.goroutines, sent, failed, reloads, kills)
	}
	takeSample()
loop:
	for {
		select {
		case <-deadline:
			break loop
		case <-sample.C:
			takeSample()
		case <-reload.C:
			h.Signal(syscall.SIGHUP)
			reloads++
		case <-kill.C:
			pids, err := servingPids(h, killed)
			if err != nil || len(pids) == 0 {
				b.Logf("no worker to kill: %v", err)
				continue
			}
			pid := pids[rand.IntN(len(pids))]
			if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
				killed[pid] = time.Now()
				kills++
			}
		}
	}
	takeSample()
	failures := ld.finish()
	sent, failed := ld.counts()
	endNote := machineNote()
	if !h.Running() {
		b.Fatal("the master exited during the soak")
	}
	if len(samples) < 2 {
		b.Fatalf("only %d samples", len(samples))
	}
	report := soakReportText(samples, sent, failed, failures, reloads, kills, sampleErrors, workers, startNote, endNote, h)
	fmt.Println(report)
	if *soakReport != "" {
		if err := writeSection(b, *soakReport, "soak", report); err != nil {
			b.Fatal(err)
		}
	}
	if strings.Contains(report, "| no |") {
		b.Error("a resource of the master did not stay flat: see the report")
	}
}

func soakReportText(samples []soakSample, sent, failed int, failures []outcome, reloads, kills, sampleErrors, workers int,
	startNote, endNote string, h *herdtest.Instance) string {
	total := samples[len(samples)-1].at
	window := 5 * time.Minute
	if total < 30*time.Minute {
		window = total / 6 // a short soak compares its first and last sixths
	}
	all := []series{
		{name: "master RSS", unit: "MiB", slack: 2},
		{name: "master open fds", unit: "", slack: 4},
		{name: "master goroutines", unit: "", slack: 10},
	}
	for _, s := range samples {
		all[0].values = append(all[0].values, float64(s.rss)/(1<<20))
		all[1].values = append(all[1].values, float64(s.fds))
		all[2].values = append(all[2].values, float64(s.goroutines))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## Soak\n\n")
	fmt.Fprintf(&b, "Run %s UTC, %s of mixed load from 8 keep-alive clients (3 hello, 2 x 50 ms sleep, 1 x 1 MiB response, "+
		"1 x 64 KiB POST echo, 1 mixed) on herd --workers %d, a SIGHUP reload every %s, a random worker SIGKILLed every %s; "+
		"the master sampled every %s (%d samples; RSS and fds from /proc/PID, goroutines from /metrics go_goroutines).\n\n",
		time.Now().UTC().Format("2006-01-02 15:04"), total.Round(time.Second), workers, *soakReloadEvery, *soakKillEvery,
		*soakSampleEvery, len(samples))
	fmt.Fprintf(&b, "Command: `make soak SOAK=%s` (`go test ./server/chaos -run '^$' -bench '^BenchmarkSoak$' -benchtime 1x -timeout 0 -args -soak.duration %s -soak.report docs/RELIABILITY.md`).\n\n",
		*soakDuration, *soakDuration)
	fmt.Fprintf(&b, "Machine: %s at the start, %s at the end.", startNote, endNote)
	if *soakNote != "" {
		fmt.Fprintf(&b, " %s", *soakNote)
	}
	fmt.Fprintf(&b, "\n\nFlat means: mean of the last %s <= mean of the first %s x 1.10 + slack (RSS 2 MiB, fds 4, goroutines 10).\n\n",
		window.Round(time.Second), window.Round(time.Second))
	fmt.Fprintf(&b, "| series | first | last | max | first %s mean | last %s mean | limit | flat |\n|---|---|---|---|---|---|---|---|\n",
		window.Round(time.Second), window.Round(time.Second))
	for _, s := range all {
		f := s.judge(samples, window)
		verdict := "yes"
		if !f.flat {
			verdict = "no"
		}
		fmt.Fprintf(&b, "| %s%s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %s |\n", s.name, unitSuffix(s.unit),
			f.first, f.last, f.most, f.firstMean, f.lastMean, f.limit, verdict)
	}
	reloadsDone := h.Count(herdtest.IsMsg("reload done"))
	fmt.Fprintf(&b, "\nRequests: %d sent, %d failed (%.3f%%). Reloads: %d sent, %d done. Workers killed: %d. Sampling errors: %d.\n",
		sent, failed, 100*float64(failed)/float64(max(sent, 1)), reloads, reloadsDone, kills, sampleErrors)
	if len(failures) > 0 {
		fmt.Fprintf(&b, "\nFailures by reason (the soak kills workers with requests in flight, so some are expected; the chaos section judges them one by one):\n\n")
		for _, line := range groupFailures(failures) {
			fmt.Fprintf(&b, "- %s\n", line)
		}
	}
	return b.String()
}

func unitSuffix(unit string) string {
	if unit == "" {
		return ""
	}
	return " (" + unit + ")"
}

// groupFailures counts failures by kind and reason, most frequent first.
func groupFailures(failures []outcome) []string {
	counts := map[string]int{}
	for _, o := range failures {
		counts[o.kind+": "+shortReason(o.failure)]++
	}
	reasons := make([]string, 0, len(counts))
	for reason := range counts {
		reasons = append(reasons, reason)
	}
	sort.Slice(reasons, func(i, j int) bool {
		a, b := counts[reasons[i]], counts[reasons[j]]
		return a > b || a == b && reasons[i] < reasons[j]
	})
	lines := make([]string, len(reasons))
	for i, reason := range reasons {
		lines[i] = fmt.Sprintf("%d x %s", counts[reason], reason)
	}
	return lines
}

// shortReason drops the request's own URL from an error, so that alike failures group.
func shortReason(failure string) string {
	if i := strings.Index(failure, "\"http://"); i >= 0 {
		if j := strings.Index(failure[i+1:], "\""); j >= 0 {
			failure = failure[:i] + "URL" + failure[i+1+j+1:]
		}
	}
	return failure
}
