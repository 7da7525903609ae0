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
// Granian (from the venv of today's peers) on the hello app, the mixed run and where the time
// goes, all short. It proves the harness works end to end (start, warm, load, sample /proc,
// the two loads of the mixed run, perf and strace where they work, stop, report) and that herd
// answers every request under wrk; the figures themselves mean nothing on a machine running
// the other tests.
func TestSmoke(t *testing.T) {
	herdtest.RequireTool(t, "wrk", "wrk")
	venv := herdtest.VenvDir(t)
	e, cleanup, err := newEnv(herdtest.RepoRoot(t), herdtest.Binary(t), venv, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	servers, _ := pickServers("herd,granian", false)
	apps, _ := pickApps("hello")
	p := plan{servers: servers, apps: apps, conns: []int{16}, rounds: 1, duration: 2 * time.Second,
		mixed: 2 * time.Second, where: time.Second, log: t.Logf}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
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
	if g := summarize(res.samples[cell{"hello", 16, "granian"}]); g.rps <= 0 {
		t.Errorf("Granian: no requests measured: %+v", g)
	}
	m := summarizeMixed(res.mixed["herd"])
	if m.rounds != 1 || m.fast.rps <= 0 || m.slowAnswered < 1 {
		t.Errorf("mixed run of herd: %+v", m)
	}
	if len(res.where) != 2 || res.where[0].sides[0].user+res.where[0].sides[0].sys <= 0 {
		t.Errorf("where the time goes: %+v", res.where)
	}
	// No describeMachine: its version probes cost seconds and prove nothing here.
	doc := renderReport(e, p, machine{when: time.Now()}, res, "")
	for _, want := range []string{"| herd | ", "| Granian (WSGI) | ", "serve hello:app --chdir bench/apps", "--venv ",
		"### Mixed", "### Where the time goes", "| hello | herd | master |", "### Issue 18's targets"} {
		if !strings.Contains(doc, want) {
			t.Errorf("report lacks %q:\n%s", want, doc)
		}
	}
}

func TestParseWrk(t *testing.T) {
	l, err := parseWrk("Running 2s test\nBENCH requests=2000 duration_us=2000000 p50_us=450 p99_us=12000 max_us=31000 connect=0 read=3 write=0 status=2 timeout=1\n")
	if err != nil {
		t.Fatal(err)
	}
	if l.rps() != 1000 || l.p50 != 450*time.Microsecond || l.p99 != 12*time.Millisecond || l.max != 31*time.Millisecond {
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

func TestParseStrace(t *testing.T) {
	path := t.TempDir() + "/strace.txt"
	out := `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 40.07    0.494964       38074        13           futex
 12.11    0.149617           8     18560           write
  6.30    0.077849           4     18574         1 read
------ ----------- ----------- --------- --------- ----------------
100.00    1.235000                 37147         1 total
`
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	calls, total, err := parseStrace(path)
	if err != nil {
		t.Fatal(err)
	}
	if total != 37147 || len(calls) != 3 || calls[0] != (straceCall{"read", 18574}) || calls[2] != (straceCall{"futex", 13}) {
		t.Errorf("parsed %v, total %d", calls, total)
	}
}

func TestParsePerfCount(t *testing.T) {
	path := t.TempDir() + "/perf.txt"
	out := "# started on Tue Dec  8 04:17:11 2026\n\n228407,,raw_syscalls:sys_enter,1908641835,100.00,,\n" +
		"<not counted>,,context-switches,0,100.00,,\n"
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := parsePerfCounts(path)
	if err != nil || n["raw_syscalls:sys_enter"] != 228407 || n["context-switches"] != 0 || len(n) != 2 {
		t.Errorf("parsed %v, %v", n, err)
	}
}

// TestTargetVerdicts: each target reads the right cells and says met or missed.
func TestTargetVerdicts(t *testing.T) {
	res := newResults()
	put := func(a string, c int, s string, rps float64, p99 time.Duration) {
		res.samples[cell{a, c, s}] = []sample{{load: load{requests: int64(rps), duration: time.Second, p99: p99}}}
	}
	put("flask", 16, "herd", 900, 0)
	put("flask", 16, "granian", 1000, 0)
	put("hello", 16, "herd", 1700, 0)
	put("hello", 16, "granian", 2000, 0)
	put("hello", 16, "gunicorn-sync", 800, 0)
	put("hello", 256, "herd", 1, 30*time.Millisecond)
	put("hello", 256, "granian", 1, 40*time.Millisecond)
	res.mixed["herd"] = []mixedSample{{fast: load{requests: 10, duration: time.Second, p99: 150 * time.Millisecond}}}
	got := map[string]bool{}
	for _, v := range targetVerdicts(res) {
		got[v.target] = v.met
	}
	want := map[string]bool{
		"flask c16 >= 1.0x Granian": false, "hello c16 >= 0.8x Granian (aim 1.0x)": true,
		"hello c256 p99 <= Granian's": true, "herd: 0 errors": true,
		"hello c16 >= 2.0x gunicorn 27 sync": true, "mixed: fast p99 <= 100 ms (item 3)": false,
	}
	if len(got) != len(want) {
		t.Errorf("verdicts %v, want %v", got, want)
	}
	for k, w := range want {
		if m, ok := got[k]; !ok || m != w {
			t.Errorf("%s: met %v (present %v), want %v", k, m, ok, w)
		}
	}
}
