package server

import (
	"fmt"
	"net/http"
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
			reportSaves(b, dir, h.URL)
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
			waitUp(b, "http://"+addr+"/")
			// gunicorn's reloader notes the app's files' mtimes on its first pass (once a
			// second) after the app is imported: a save before that pass is never seen.
			time.Sleep(2 * time.Second)
			reportSaves(b, dir, "http://"+addr)
		}
	})
}

func reportSaves(b *testing.B, dir, url string) {
	c := herdtest.Client()
	var took []time.Duration
	for i := range 20 {
		greeting := fmt.Sprintf("Hello, save %02d!", i)
		setGreeting(b, dir, greeting)
		took = append(took, waitForBody(b, c, url+"/", greeting+"\n", 20*time.Second, false))
		time.Sleep(500 * time.Millisecond) // let the old workers go before the next save
	}
	b.ReportMetric(float64(medianOf(took).Milliseconds()), "ms-median")
	b.ReportMetric(float64(slices.Min(took).Milliseconds()), "ms-min")
	b.ReportMetric(float64(slices.Max(took).Milliseconds()), "ms-max")
}

func waitUp(b *testing.B, url string) {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := c.Get(url); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Fatalf("%s not up within 20s", url)
}
