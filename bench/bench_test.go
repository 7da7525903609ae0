package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// TestSmoke is the benchmark's short form for `make test`: one round of 2 seconds of herd and
// uwsgi --http-socket on the hello app, without warm-up. It proves the harness works end to end (start, warm,
// load, sample /proc, stop, report) and that herd answers every request under wrk; the
// figures themselves mean nothing on a machine running the other tests.
func TestSmoke(t *testing.T) {
	herdtest.RequireTool(t, "wrk", "wrk")
	herdtest.RequireTool(t, "uwsgi", "uwsgi and uwsgi-plugin-python3")
	python := herdtest.RequireTool(t, "/usr/bin/python3", "python3")
	e, cleanup, err := newEnv(herdtest.RepoRoot(t), herdtest.Binary(t), python, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	servers, _ := pickServers("herd,uwsgi-http-socket")
	apps, _ := pickApps("hello")
	p := plan{servers: servers, apps: apps, conns: []int{16}, rounds: 1, duration: 2 * time.Second,
		log: t.Logf}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := measure(ctx, e, p)
	if err != nil {
		t.Fatal(err)
	}
	herd := summarize(res.samples[cell{"hello", 16, "herd"}])
	if herd.rounds != 1 || herd.rps <= 0 {
		t.Fatalf("herd: no requests measured: %+v", herd)
	}
	if herd.errs.total() != 0 {
		t.Errorf("herd answered with errors under wrk: %v", herd.errs)
	}
	if herd.rssTotal <= herd.rssRoot || herd.cpuPerReq <= 0 {
		t.Errorf("herd's processes were not sampled: RSS %d (master %d), CPU/request %v", herd.rssTotal, herd.rssRoot, herd.cpuPerReq)
	}
	if u := summarize(res.samples[cell{"hello", 16, "uwsgi-http-socket"}]); u.rps <= 0 {
		t.Errorf("uwsgi --http-socket: no requests measured: %+v", u)
	}
	// No describeMachine: its version probes cost seconds and prove nothing here.
	doc := renderReport(e, p, machine{when: time.Now()}, res, "")
	for _, want := range []string{"| herd | ", "| uwsgi --http-socket | ", "serve hello:app --chdir bench/apps"} {
		if !strings.Contains(doc, want) {
			t.Errorf("report lacks %q:\n%s", want, doc)
		}
	}
}

func TestParseWrk(t *testing.T) {
	l, err := parseWrk("Running 2s test\nBENCH requests=2000 duration_us=2000000 p50_us=450 p99_us=12000 connect=0 read=3 write=0 status=2 timeout=1\n")
	if err != nil {
		t.Fatal(err)
	}
	if l.rps() != 1000 || l.p50 != 450*time.Microsecond || l.p99 != 12*time.Millisecond {
		t.Errorf("parsed %+v", l)
	}
	if l.errs.total() != 6 || l.errs.String() != "3 read, 1 timeout, 2 non-2xx/3xx" {
		t.Errorf("errors %v", l.errs)
	}
	if _, err := parseWrk("unable to connect"); err == nil {
		t.Error("wrk output without the report line parsed")
	}
}

// TestKeptTail: a new report keeps the hand-written part of the old one, from its marker on.
func TestKeptTail(t *testing.T) {
	path := t.TempDir() + "/report.md"
	if got := keptTail(path); got != "" {
		t.Fatalf("no old report: %q", got)
	}
	old := "# old figures\n\n" + keptMarker + "\n## Profiles\n"
	if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, want := keptTail(path), "\n"+keptMarker+"\n## Profiles\n"; got != want {
		t.Fatalf("kept %q, want %q", got, want)
	}
}
