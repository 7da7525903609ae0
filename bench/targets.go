package main

import (
	"fmt"
	"strings"
	"time"
)

// Issue 18's targets, judged from the run's own medians: "no slower for it" (item 4) and the
// mixed run's fast p99 (item 3). Each row names its figure, so that a miss says by how much.

// verdict is one target's line in the table.
type verdict struct {
	target, figure string
	met            bool
}

// ratioVerdict is herd's c-connection requests/s over peer's on app against a floor.
func ratioVerdict(res *results, appName string, c int, peer, peerLabel string, floor float64, aim string) (verdict, bool) {
	h := summarize(res.samples[cell{appName, c, "herd"}])
	o := summarize(res.samples[cell{appName, c, peer}])
	if h.rounds == 0 || o.rounds == 0 || o.rps == 0 {
		return verdict{}, false
	}
	r := h.rps / o.rps
	return verdict{
		target: fmt.Sprintf("%s c%d >= %.1fx %s%s", appName, c, floor, peerLabel, aim),
		figure: fmt.Sprintf("%.2fx (%.0f vs %.0f req/s)", r, h.rps, o.rps),
		met:    r >= floor,
	}, true
}

// targetVerdicts are the verdicts this run can give; rows whose figures are missing are left out.
func targetVerdicts(res *results) []verdict {
	var out []verdict
	add := func(v verdict, ok bool) {
		if ok {
			out = append(out, v)
		}
	}
	add(ratioVerdict(res, "flask", 16, "granian", "Granian", 1.0, ""))
	add(ratioVerdict(res, "django", 16, "granian", "Granian", 1.0, ""))
	add(ratioVerdict(res, "hello", 16, "granian", "Granian", 0.8, " (aim 1.0x)"))
	for _, a := range []string{"hello", "flask", "django"} {
		h := summarize(res.samples[cell{a, 256, "herd"}])
		g := summarize(res.samples[cell{a, 256, "granian"}])
		if h.rounds > 0 && g.rounds > 0 {
			out = append(out, verdict{
				target: fmt.Sprintf("%s c256 p99 <= Granian's", a),
				figure: fmt.Sprintf("%s vs %s ms (%.2fx)", ms(h.p99), ms(g.p99), float64(h.p99)/float64(max(g.p99, 1))),
				met:    h.p99 <= g.p99,
			})
		}
	}
	var errs errCounts
	runs := 0
	for k, samples := range res.samples {
		if k.server == "herd" {
			for _, s := range samples {
				errs, runs = errs.add(s.errs), runs+1
			}
		}
	}
	for _, m := range res.mixed["herd"] {
		errs, runs = errs.add(m.fast.errs).add(m.slow.errs), runs+1
	}
	if runs > 0 {
		out = append(out, verdict{target: "herd: 0 errors", figure: fmt.Sprintf("%v over %d loads", errs, runs), met: errs.total() == 0})
	}
	add(ratioVerdict(res, "hello", 16, "gunicorn-sync", "gunicorn 27 sync", 2.0, ""))
	add(ratioVerdict(res, "hello", 16, "uwsgi-http-socket", "`uwsgi --http-socket`", 1.2, ""))
	if m := summarizeMixed(res.mixed["herd"]); m.rounds > 0 {
		out = append(out, verdict{
			target: "mixed: fast p99 <= 100 ms (item 3)",
			figure: fmt.Sprintf("p99 %s ms, max %s ms", ms(m.fast.p99), ms(m.max)),
			met:    m.fast.p99 <= 100*time.Millisecond,
		})
	}
	return out
}

// renderTargets is the table of verdicts, above the figures they come from.
func renderTargets(b *strings.Builder, res *results) {
	vs := targetVerdicts(res)
	if len(vs) == 0 {
		return
	}
	b.WriteString("\n### Issue 18's targets in this run\n\nMedians of this run's rounds (the tables below); " +
		"errors summed over every herd load of the run.\n\n| target | figure | verdict |\n|---|---|---|\n")
	for _, v := range vs {
		word := "**missed**"
		if v.met {
			word = "met"
		}
		fmt.Fprintf(b, "| %s | %s | %s |\n", v.target, v.figure, word)
	}
}
