package chaos

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// startHerd serves the chaos app with the admin server on, and waits for its workers.
func startHerd(t testing.TB, workers int, extra ...string) *herdtest.Instance {
	t.Helper()
	args := append([]string{"chaosapp:app", "--workers", strconv.Itoa(workers)}, extra...)
	h := herdtest.Start(t, herdtest.Options{Dir: writeApp(t), Admin: true, Args: args,
		Env: []string{"PYTHONDONTWRITEBYTECODE=1"}})
	h.WaitReady(workers, 60*time.Second)
	return h
}

// workerView is one worker in /stats.
type workerView struct {
	ID       int    `json:"id"`
	Pid      int    `json:"pid"`
	State    string `json:"state"`
	InFlight int    `json:"in_flight"`
}

func (w workerView) serving() bool { return w.State == "ready" || w.State == "busy" }

type statsView struct {
	Workers []workerView `json:"workers"`
}

var adminClient = &http.Client{Timeout: 5 * time.Second}

// stats reads the master's /stats.
func stats(h *herdtest.Instance) (statsView, error) {
	var st statsView
	resp, err := adminClient.Get(h.AdminURL + "/stats")
	if err != nil {
		return st, fmt.Errorf("GET /stats: %w", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("decode /stats: %w", err)
	}
	return st, nil
}

// metric reads one unlabelled sample (e.g. go_goroutines) from the master's /metrics.
func metric(h *herdtest.Instance, name string) (float64, error) {
	resp, err := adminClient.Get(h.AdminURL + "/metrics")
	if err != nil {
		return 0, fmt.Errorf("GET /metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read /metrics: %w", err)
	}
	return 0, fmt.Errorf("/metrics has no %s", name)
}

// strengthSample is the set of serving worker pids at one moment.
type strengthSample struct {
	at   time.Time
	pids []int
}

// watcher polls /stats until stop and keeps what it saw.
type watcher struct {
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	samples []strengthSample
	errors  int
}

func watch(h *herdtest.Instance, every time.Duration) *watcher {
	w := &watcher{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			st, err := stats(h)
			w.mu.Lock()
			if err != nil {
				w.errors++
			} else {
				s := strengthSample{at: time.Now()}
				for _, wv := range st.Workers {
					if wv.serving() {
						s.pids = append(s.pids, wv.Pid)
					}
				}
				w.samples = append(w.samples, s)
			}
			w.mu.Unlock()
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// count is how many samples the watcher has taken so far.
func (w *watcher) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.samples)
}

func (w *watcher) finish() []strengthSample {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.samples
}

// servingPids lists the pids /stats shows serving now, without those in skip.
func servingPids(h *herdtest.Instance, skip map[int]time.Time) ([]int, error) {
	st, err := stats(h)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, w := range st.Workers {
		if _, gone := skip[w.Pid]; w.serving() && !gone {
			out = append(out, w.Pid)
		}
	}
	return out, nil
}

// workerPids maps worker ids to pids from the "worker ready" events of the log.
func workerPids(h *herdtest.Instance) map[int]int {
	out := map[int]int{}
	for _, ev := range h.Events() {
		if ev.Msg() == "worker ready" {
			out[ev.Int("worker")] = ev.Int("pid")
		}
	}
	return out
}

// accessWorkers maps request paths to the worker id the access log names (-1: none).
func accessWorkers(h *herdtest.Instance) map[string]int {
	out := map[string]int{}
	for _, ev := range h.Events() {
		if ev.Str("component") == "access" {
			out[ev.Str("path")] = ev.Int("worker")
		}
	}
	return out
}

// procStat is one sample of a process's resources.
type procStat struct {
	rss int64 // bytes
	fds int
}

func sampleProc(pid int) (procStat, error) {
	var ps procStat
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ps, fmt.Errorf("read status of %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return ps, fmt.Errorf("VmRSS of %d: %w", pid, err)
			}
			ps.rss = kb << 10
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return ps, fmt.Errorf("list fds of %d: %w", pid, err)
	}
	ps.fds = len(fds)
	return ps, nil
}

// machineNote says what the machine was and how busy, for the reports.
func machineNote() string {
	load, _ := os.ReadFile("/proc/loadavg")
	fields := strings.Fields(string(load))
	if len(fields) > 3 {
		fields = fields[:3]
	}
	cpus := 0
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		cpus = strings.Count(string(b), "processor\t:")
	}
	return fmt.Sprintf("%d CPUs, load average %s", cpus, strings.Join(fields, " "))
}

// commitNote names the checkout's commit, and whether it had local changes.
func commitNote(t testing.TB) string {
	root := herdtest.RepoRoot(t)
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "an unknown commit"
	}
	note := "commit " + strings.TrimSpace(string(out))
	if dirty, _ := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); len(dirty) > 0 {
		note += " with local changes"
	}
	return note
}

// writeSection replaces the text between the section's markers in the report file (or
// appends the section), so that make chaos and make soak each rewrite only their own part.
//
// A relative path is taken from the checkout's top, not from chaos/ where go test runs.
func writeSection(t testing.TB, path, name, body string) error {
	if !filepath.IsAbs(path) {
		path = filepath.Join(herdtest.RepoRoot(t), path)
	}
	begin, end := "<!-- "+name+":begin -->", "<!-- "+name+":end -->"
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("read report: %w", err)
	}
	text := string(old)
	section := begin + "\n" + strings.TrimSpace(body) + "\n" + end
	i, j := strings.Index(text, begin), strings.Index(text, end)
	switch {
	case i >= 0 && j > i:
		text = text[:i] + section + text[j+len(end):]
	case text == "":
		text = "# herd reliability: chaos and soak\n\nWritten by `make chaos` and `make soak` (chaos/); each rewrites its own section.\n\n" + section + "\n"
	default:
		text = strings.TrimRight(text, "\n") + "\n\n" + section + "\n"
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return os.WriteFile(path, []byte(text), 0o644)
}
