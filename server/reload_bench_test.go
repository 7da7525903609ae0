package server

import (
	"fmt"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// BenchmarkSaveToNewResponse measures, for herd dev and for gunicorn --reload side by side,
// the time from saving app.py to the first response of the new code, over 20 saves each, and
// reports the median. `make bench-reload` runs it; docs/development.md has the figures.
func BenchmarkSaveToNewResponse(b *testing.B) {
	b.Run("herd-dev", func(b *testing.B) {
		for range b.N {
			dir := herdtest.CopyExample(b)
			h := herdtest.Start(b, herdtest.Options{Command: "dev", Dir: dir, Args: []string{"app:app"}})
			h.WaitReady(1, 20*time.Second)
			stopped := 0
			reportSaves(b, dir, h.URL, func() {
				stopped++
				herdtest.Eventually(b, 20*time.Second, "the old worker stopped", func() bool {
					return h.Count(herdtest.IsMsg("worker stopped")) >= stopped
				})
			})
		}
	})
	b.Run("gunicorn-reload", func(b *testing.B) {
		herdtest.RequirePythonModule(b, "/usr/bin/python3", "gunicorn", "gunicorn")
		for range b.N {
			dir := herdtest.CopyExample(b)
			addr := herdtest.FreeAddr(b)
			cmd := exec.Command("/usr/bin/python3", "-m", "gunicorn", "-w", "2", "-b", addr, "--chdir", dir, "--reload", "app:app")
			// Its own process group, killed whole: SIGKILL to the arbiter alone leaves its
			// workers running until they notice.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
			herdtest.WaitListening(b, addr, 20*time.Second, "gunicorn")
			// Each worker reloads by itself: it exits, and the arbiter starts another.
			var old []int
			replaced := func() {
				herdtest.EventuallyNil(b, 20*time.Second, "gunicorn's 2 workers, none from before the save", func() error {
					kids := herdtest.ChildPids(cmd.Process.Pid)
					if len(kids) != 2 || slices.ContainsFunc(kids, func(pid int) bool { return slices.Contains(old, pid) }) {
						return fmt.Errorf("workers %v, before the save %v", kids, old)
					}
					old = kids
					return nil
				})
				// Time is the subject: a worker's reloader notes the files' mtimes on its
				// first pass, after the app is imported, and gives no sign of it; a save
				// before that pass is never seen.
				time.Sleep(time.Second)
			}
			replaced()
			reportSaves(b, dir, "http://"+addr, replaced)
		}
	})
}

// reportSaves saves a new greeting 20 times, measures each until the new code answers, and
// reports the median; settled waits after each until the old workers have gone.
func reportSaves(b *testing.B, dir, url string, settled func()) {
	c := herdtest.Client()
	var took []time.Duration
	for i := range 20 {
		greeting := fmt.Sprintf("Hello, save %02d!", i)
		setGreeting(b, dir, greeting)
		took = append(took, waitForBody(b, c, url+"/", greeting+"\n", 20*time.Second, false))
		settled()
	}
	b.ReportMetric(float64(medianOf(took).Milliseconds()), "ms-median")
	b.ReportMetric(float64(slices.Min(took).Milliseconds()), "ms-min")
	b.ReportMetric(float64(slices.Max(took).Milliseconds()), "ms-max")
}
