package admin_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/herd-server/herd/admin"
	"github.com/herd-server/herd/internal/herdtest"
)

// startAdmin runs herd with n workers and the admin server, and waits for the workers.
func startAdmin(t *testing.T, n int, extra ...string) *herdtest.Instance {
	t.Helper()
	h := herdtest.Start(t, herdtest.Options{Admin: true, Args: append([]string{"app:app", "--workers", fmt.Sprint(n), "--access-log", "off"}, extra...)})
	h.WaitReady(n, 60*time.Second)
	return h
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	return herdtest.Get(t, herdtest.Client(), url)
}

func do(t *testing.T, method, url, body string, want int) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := herdtest.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d", method, url, resp.StatusCode, want)
	}
}

func scrape(t *testing.T, adminURL string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := herdtest.Client().Get(adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: status %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics is not Prometheus text: %v", err)
	}
	return fams
}

// find returns the metric of family name whose labels include want.
func find(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no %s in /metrics", name)
	}
next:
	for _, m := range f.Metric {
		for k, v := range want {
			found := false
			for _, l := range m.Label {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		return m
	}
	t.Fatalf("no %s%v in /metrics", name, want)
	return nil
}

func counter(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	m := find(t, fams, name, labels)
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func bucket(t *testing.T, h *dto.Histogram, le float64) uint64 {
	t.Helper()
	for _, b := range h.Bucket {
		if b.GetUpperBound() == le {
			return b.GetCumulativeCount()
		}
	}
	t.Fatalf("no bucket le=%g", le)
	return 0
}

// TestMetricsAfterKnownRequestMix sends a known mix of requests and checks every count the
// scrape shows: by method and status class, the latency and queue-wait histograms, bytes,
// workers by state, their RSS, and a crash among the exits.
func TestMetricsAfterKnownRequestMix(t *testing.T) {
	h := startAdmin(t, 2)
	for range 5 {
		do(t, "GET", h.URL+"/", "", 200)
	}
	do(t, "GET", h.URL+"/nope", "", 404)
	do(t, "GET", h.URL+"/nope", "", 404)
	do(t, "GET", h.URL+"/boom", "", 500)
	for range 3 {
		do(t, "POST", h.URL+"/echo", strings.Repeat("x", 100), 200)
	}
	do(t, "HEAD", h.URL+"/", "", 200)
	do(t, "GET", h.URL+"/sleep?s=0.6", "", 200) // the one slow request
	const total = 13

	fams := scrape(t, h.AdminURL)
	for _, c := range []struct {
		method, code string
		want         float64
	}{{"GET", "2xx", 6}, {"GET", "4xx", 2}, {"GET", "5xx", 1}, {"POST", "2xx", 3}, {"HEAD", "2xx", 1}, {"POST", "5xx", 0}} {
		if got := counter(t, fams, "herd_http_requests_total", map[string]string{"method": c.method, "code": c.code}); got != c.want {
			t.Errorf("requests{method=%s,code=%s} = %g, want %g", c.method, c.code, got, c.want)
		}
	}
	lat := find(t, fams, "herd_http_request_duration_seconds", nil).Histogram
	if lat.GetSampleCount() != total {
		t.Errorf("latency histogram count = %d, want %d", lat.GetSampleCount(), total)
	}
	// Every request but the slow one ends well under half a second; the slow one slept 0.6 s.
	if got := bucket(t, lat, 0.5); got != total-1 {
		t.Errorf("latency bucket le=0.5 holds %d, want %d (all but the 0.6 s sleep)", got, total-1)
	}
	if got := bucket(t, lat, 0.0005); got > bucket(t, lat, 0.5) {
		t.Errorf("buckets not cumulative: le=0.0005 %d > le=0.5", got)
	}
	if lat.GetSampleSum() < 0.6 {
		t.Errorf("latency sum %g s is below the 0.6 s the slow request slept", lat.GetSampleSum())
	}
	if got := find(t, fams, "herd_queue_wait_seconds", nil).Histogram.GetSampleCount(); got != total {
		t.Errorf("queue wait histogram count = %d, want %d", got, total)
	}
	if got := counter(t, fams, "herd_http_request_bytes_total", nil); got != 300 {
		t.Errorf("request bytes = %g, want 300", got)
	}
	// Bodies of known size: 6 hello (17), 2 not found (10), 3 echoes (100), slept (6).
	if got := counter(t, fams, "herd_http_response_bytes_total", nil); got < 6*17-17+2*10+300+6 {
		t.Errorf("response bytes = %g, fewer than the known bodies", got)
	}
	if got := counter(t, fams, "herd_workers", map[string]string{"state": "ready"}); got != 2 {
		t.Errorf("ready workers = %g, want 2", got)
	}
	if got := counter(t, fams, "herd_http_requests_in_flight", nil); got != 0 {
		t.Errorf("in flight = %g, want 0", got)
	}
	if n := len(fams["herd_worker_rss_bytes"].GetMetric()); n != 2 {
		t.Errorf("rss series for %d workers, want 2", n)
	}
	for _, m := range fams["herd_worker_rss_bytes"].GetMetric() {
		if rss := m.Gauge.GetValue(); rss < 1<<20 {
			t.Errorf("worker rss %g bytes: implausibly small for a Python process", rss)
		}
	}

	// A crash is counted with its cause once the supervisor has reaped the worker.
	pids := workerPids(t, h.AdminURL)
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := h.WaitEvent(0, 30*time.Second, herdtest.IsMsg("worker died")); !ok {
		t.Fatal("the killed worker's death was not logged")
	}
	fams = scrape(t, h.AdminURL)
	if got := counter(t, fams, "herd_worker_exits_total", map[string]string{"cause": "crash"}); got != 1 {
		t.Errorf("exits{cause=crash} = %g, want 1", got)
	}
	if got := counter(t, fams, "herd_worker_exits_total", map[string]string{"cause": "stop"}); got != 0 {
		t.Errorf("exits{cause=stop} = %g, want 0", got)
	}
	// The replacement takes the dead worker's slot: the per-worker series keep their labels.
	herdtest.Eventually(t, 30*time.Second, "the replacement ready", func() bool {
		return counter(t, scrape(t, h.AdminURL), "herd_workers", map[string]string{"state": "ready"}) == 2
	})
	var slots []string
	for _, m := range scrape(t, h.AdminURL)["herd_worker_requests_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			slots = append(slots, l.GetName()+"="+l.GetValue())
		}
	}
	slices.Sort(slots)
	if strings.Join(slots, ",") != "worker=0,worker=1" {
		t.Errorf("per-worker series after a replacement: %v, want the slots worker=0,worker=1", slots)
	}
}

func stats(t *testing.T, adminURL string) admin.Stats {
	t.Helper()
	code, body := get(t, adminURL+"/stats")
	if code != 200 {
		t.Fatalf("/stats: %d %s", code, body)
	}
	var st admin.Stats
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/stats is not JSON: %v\n%s", err, body)
	}
	return st
}

func workerPids(t *testing.T, adminURL string) []int {
	t.Helper()
	var pids []int
	for _, w := range stats(t, adminURL).Workers {
		pids = append(pids, w.Pid)
	}
	return pids
}

// TestReadyzTurns503OnSIGTERMWhileDraining: /readyz is 200 while serving, answers 503
// within 100 ms of SIGTERM, and a request in flight at that moment still completes. /stats
// shows that request as its worker's current one meanwhile.
func TestReadyzTurns503OnSIGTERMWhileDraining(t *testing.T) {
	h := startAdmin(t, 1)
	if code, body := get(t, h.AdminURL+"/readyz"); code != 200 {
		t.Fatalf("/readyz before stop: %d %s", code, body)
	}
	if code, _ := get(t, h.AdminURL+"/healthz"); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	slow := make(chan error, 1)
	go func() {
		resp, err := herdtest.Client().Get(h.URL + "/sleep?s=1.5")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "slept\n" {
				err = fmt.Errorf("draining request got %d %q", resp.StatusCode, b)
			}
		}
		slow <- err
	}()
	// Wait until the worker holds the request: /stats names it.
	var st admin.Stats
	herdtest.Eventually(t, 10*time.Second, "the slow request shown as the worker's current one", func() bool {
		st = stats(t, h.AdminURL)
		return len(st.Workers) == 1 && len(st.Workers[0].Current) == 1
	})
	if c := st.Workers[0].Current[0]; c.Method != "GET" || c.URI != "/sleep?..." || c.AgeMs < 0 {
		t.Fatalf("current request = %+v", c)
	}

	sent := time.Now()
	if err := h.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	draining := func() bool {
		resp, err := herdtest.Client().Get(h.AdminURL + "/readyz")
		if err != nil {
			t.Fatalf("/readyz during drain: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	}
	// Poll checks once more at its limit: false means still 200 100 ms after the signal.
	if !herdtest.Poll(100*time.Millisecond, draining) {
		herdtest.Eventually(t, 2*time.Second, "/readyz turning 503 after SIGTERM", draining)
		t.Errorf("/readyz turned 503 after %s, want within 100 ms", time.Since(sent))
	}
	t.Logf("/readyz turned 503 within %s after SIGTERM", time.Since(sent))
	if err := <-slow; err != nil {
		t.Fatalf("request in flight at SIGTERM: %v", err)
	}
	if code := h.Wait(30 * time.Second); code != 0 {
		t.Fatalf("herd exited %d after a graceful stop", code)
	}
}

// TestAdminSurvivesUSR2Upgrade: the admin socket is handed over with the HTTP ones, so
// the new master serves /stats on the same address and the old one exits cleanly.
func TestAdminSurvivesUSR2Upgrade(t *testing.T) {
	h := startAdmin(t, 1)
	oldPid := h.Cmd.Process.Pid
	if st := stats(t, h.AdminURL); st.Pid != oldPid {
		t.Fatalf("/stats pid %d, want %d", st.Pid, oldPid)
	}
	newPid := h.Upgrade(60 * time.Second)
	if code := h.Wait(60 * time.Second); code != 0 {
		t.Fatalf("old master exited %d after the upgrade, want 0", code)
	}
	if st := stats(t, h.AdminURL); st.Pid != newPid || !st.Ready || len(st.Workers) != 1 {
		t.Fatalf("after the upgrade /stats shows pid %d ready=%v with %d workers; want the new master %d, ready, 1 worker",
			st.Pid, st.Ready, len(st.Workers), newPid)
	}
	if code, body := get(t, h.AdminURL+"/readyz"); code != 200 {
		t.Fatalf("/readyz on the new master: %d %s", code, body)
	}
}
