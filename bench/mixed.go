package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The mixed run (issue 18): what a slow view does to everything else. One client asks the
// Flask app's /slow (1.5 s asleep, holding whatever serves it) in a loop while wrk loads
// /hello with a few connections; the fast requests' p99 and slowest say whether a request
// ever waited behind the slow one while the server had room elsewhere. Two wrk processes,
// each with its own report line: the slow client starts first so that a slow request is in
// flight from the fast load's first request to its last.

// mixedApp is the app of the mixed run and its fast path; mixedSlowPath is its 1.5 s view.
var mixedApp = app{name: "flask", module: "flaskapp:app", path: "/hello"}

const (
	mixedSlowPath  = "/slow"
	mixedFastConns = 8
	// mixedTimeout is wrk's request timeout on both loads: far above 1.5 s, so that no
	// wait is left out of the percentiles as a timeout.
	mixedTimeout = 10 * time.Second
	// mixedLead is how long the slow client runs before the fast load starts.
	mixedLead = 300 * time.Millisecond
)

// mixedSample is one mixed run of one server: the fast load and the slow client.
type mixedSample struct {
	fast, slow load
}

// runsMixed says whether s serves the mixed run's app (the Go limit and nginx's files do not).
func (s server) runsMixed() bool { return !s.onlyHello && !s.onlyStatic }

// measureMixed runs the mixed load on every server that serves apps, in rounds (at least
// one) with the order rotated as in the main tables. A run of static files alone has none.
func measureMixed(ctx context.Context, e *env, p plan, res *results) error {
	if p.mixed <= 0 || !slices.ContainsFunc(p.apps, func(a app) bool { return !a.static }) {
		return nil
	}
	var servers []server
	for _, s := range p.servers {
		if s.runsMixed() {
			servers = append(servers, s)
		}
	}
	for round := 0; round < max(p.rounds, 1); round++ {
		for i := range servers {
			if err := ctx.Err(); err != nil {
				return err
			}
			s := servers[(i+round)%len(servers)]
			if err := mixedOne(ctx, e, p, s, round, res); err != nil {
				return err
			}
		}
	}
	return nil
}

// mixedOne starts s with the Flask app, warms it with fast requests only, then runs the slow
// client and the fast load together.
func mixedOne(ctx context.Context, e *env, p plan, s server, round int, res *results) error {
	script, err := writeWrkScript(e.tmp, mixedApp)
	if err != nil {
		return err
	}
	inst, err := s.launch(e, mixedApp)
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	var na notAvailable
	if errors.As(err, &na) {
		res.mixedNA[s.key] = err.Error()
		return nil
	}
	if err != nil {
		return err
	}
	defer inst.stop()
	if p.warmup > 0 {
		if _, err := runWrk(ctx, wrkArgs(script, mixedFastConns, p.warmup, inst.url)); err != nil {
			return fmt.Errorf("mixed warm-up of %s: %w", s.key, err)
		}
	}
	slowURL := strings.TrimSuffix(inst.url, mixedApp.path) + mixedSlowPath
	slowArgs := wrkTimeoutArgs(script, 1, p.mixed+time.Second, mixedTimeout, slowURL)
	fastArgs := wrkTimeoutArgs(script, mixedFastConns, p.mixed, mixedTimeout, inst.url)
	e.noteCommand("mixed/slow", slowArgs)
	e.noteCommand("mixed/fast", fastArgs)
	type result struct {
		l   load
		err error
	}
	slowDone := make(chan result, 1)
	go func() {
		l, err := runWrk(ctx, slowArgs)
		slowDone <- result{l, err}
	}()
	select {
	case <-time.After(mixedLead):
	case <-ctx.Done():
	}
	fast, fastErr := runWrk(ctx, fastArgs)
	slow := <-slowDone
	if fastErr != nil {
		return fmt.Errorf("mixed, %s, fast load: %w", s.key, fastErr)
	}
	if slow.err != nil {
		return fmt.Errorf("mixed, %s, slow client: %w", s.key, slow.err)
	}
	res.mixed[s.key] = append(res.mixed[s.key], mixedSample{fast: fast, slow: slow.l})
	p.log("bench: round %d mixed   c%-4d %-18s %9.0f req/s  p50 %-9v p99 %-9v max %-9v errors %v  slow answered %d (p50 %v, errors %v)",
		round+1, mixedFastConns, s.key, fast.rps(), fast.p50, fast.p99, fast.max, fast.errs,
		slow.l.requests, slow.l.p50, slow.l.errs)
	return nil
}

// mixedRow is the medians of one server's mixed runs.
type mixedRow struct {
	fast         row
	max          time.Duration
	slowAnswered int64
	slowP50      time.Duration
	slowErrs     errCounts
	rounds       int
}

func summarizeMixed(samples []mixedSample) mixedRow {
	var fast []sample
	var maxes, slowP50 []time.Duration
	var slowN []int64
	r := mixedRow{rounds: len(samples)}
	for _, s := range samples {
		fast = append(fast, sample{load: s.fast})
		maxes = append(maxes, s.fast.max)
		slowN, slowP50 = append(slowN, s.slow.requests), append(slowP50, s.slow.p50)
		r.slowErrs = r.slowErrs.add(s.slow.errs)
	}
	r.fast = summarize(fast)
	r.max, r.slowAnswered, r.slowP50 = median(maxes), median(slowN), median(slowP50)
	return r
}

// renderMixed is the mixed run's table, in the style of the others.
func renderMixed(b *strings.Builder, p plan, res *results) {
	if len(res.mixed) == 0 && len(res.mixedNA) == 0 {
		return
	}
	fmt.Fprintf(b, "\n### Mixed: Flask /hello at %d connections while one client asks a 1.5 s view in a loop\n\n", mixedFastConns)
	fmt.Fprintf(b, "The fast load (`wrk -c%d`, %v) starts %v after the slow client (`wrk -c1` on /slow, "+
		"`time.sleep(1.5)` in the view), so a slow request holds one worker (or thread) all along. "+
		"Both with `--timeout %v`, so no wait is left out of the percentiles. Medians over rounds; "+
		"max: the median of each round's slowest fast request; slow answered: slow requests "+
		"completed per round (at most %d in %v).\n\n",
		mixedFastConns, p.mixed, mixedLead, mixedTimeout, int((p.mixed+time.Second)/(1500*time.Millisecond)), p.mixed+time.Second)
	b.WriteString("| server | fast req/s | fast p50 ms | fast p99 ms | fast max ms | errors (fast) | slow answered (p50 ms) | herd / this |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|\n")
	herd := summarizeMixed(res.mixed["herd"])
	for _, s := range p.servers {
		if !s.runsMixed() {
			continue
		}
		if why, ok := res.mixedNA[s.key]; ok {
			fmt.Fprintf(b, "| %s | %s | | | | | | |\n", s.label, why)
			continue
		}
		r := summarizeMixed(res.mixed[s.key])
		if r.rounds == 0 {
			continue
		}
		ratio := "-"
		if herd.rounds > 0 && r.fast.rps > 0 {
			ratio = fmt.Sprintf("%.2f", herd.fast.rps/r.fast.rps)
		}
		slow := fmt.Sprintf("%d (%s)", r.slowAnswered, ms(r.slowP50))
		if r.slowErrs.total() > 0 {
			slow += ", errors " + r.slowErrs.String()
		}
		fmt.Fprintf(b, "| %s | %.0f%s | %s | %s | %s | %v | %s | %s |\n",
			s.label, r.fast.rps, spread(r.fast), ms(r.fast.p50), ms(r.fast.p99), ms(r.max), r.fast.errs, slow, ratio)
	}
}
