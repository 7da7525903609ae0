package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// BenchmarkSaveToNewResponse measures, for herd dev and for gunicorn --reload side by side,
// the time from saving app.py to the first response of the new code, over 20 saves each, and
// reports the median; then the same on a Django project made by django-admin startproject
// (an app, a view), saving the view, under Debian's Django 3.2 and the venv's 6.1, and
// saving models.py too (a module the app server imported), beside Django's runserver.
// `make bench-reload` runs it; docs/development.md has the figures.
func BenchmarkSaveToNewResponse(b *testing.B) {
	b.Run("herd-dev", func(b *testing.B) {
		for range b.N {
			dir := herdtest.CopyExample(b)
			h := herdtest.Start(b, herdtest.Options{Command: "dev", Dir: dir, Args: []string{"app:app"}})
			h.WaitReady(1, 20*time.Second)
			reportSaves(b, dir, h.URL)
		}
	})
	for _, c := range []struct {
		name, python string
		models       bool
	}{
		{"herd-dev-django-debian-view", "/usr/bin/python3", false},
		{"herd-dev-django-venv-view", "", false},
		{"herd-dev-django-venv-models", "", true},
	} {
		b.Run(c.name, func(b *testing.B) {
			python := djangoPython(b, c.python)
			for range b.N {
				dir := startDjangoProject(b, python, "v0")
				h := herdtest.Start(b, herdtest.Options{Command: "dev", Dir: dir, Args: []string{"mysite.wsgi", "--python", python}})
				h.WaitReady(1, 60*time.Second)
				reportDjangoSaves(b, dir, h.URL, c.models)
			}
		})
	}
	b.Run("runserver-django-venv-view", func(b *testing.B) {
		python := djangoPython(b, "")
		for range b.N {
			dir := startDjangoProject(b, python, "v0")
			addr := herdtest.FreeAddr(b)
			cmd := exec.Command(python, "manage.py", "runserver", addr)
			cmd.Dir = dir
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its reloader's child too
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
			waitUp(b, "http://"+addr+"/")
			// Its reloader notes the files' modification times on its first pass after the
			// import, once a second: a save before that is never seen.
			time.Sleep(2 * time.Second)
			reportDjangoSaves(b, dir, "http://"+addr, false)
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
	reportTook(b, took)
}

// reportDjangoSaves saves the Django project's view 20 times (and models.py with it when
// models), and reports from each save to the new view's first answer. Requests that fail
// on the way (runserver restarts its process) are counted, not fatal.
func reportDjangoSaves(b *testing.B, dir, url string, models bool) {
	c := herdtest.Client()
	failed := 0
	var took []time.Duration
	for i := range 20 {
		greeting := fmt.Sprintf("Hello, save %02d!", i)
		if models {
			f, err := os.OpenFile(filepath.Join(dir, "polls", "models.py"), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				b.Fatal(err)
			}
			_, err = fmt.Fprintf(f, "# save %d\n", i)
			if err := errors.Join(err, f.Close()); err != nil {
				b.Fatal(err)
			}
		}
		setDjangoView(b, dir, greeting)
		saved := time.Now()
		for {
			resp, err := c.Get(url + "/")
			var body []byte
			if err == nil {
				body, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			if err != nil {
				failed++
			} else if string(body) == greeting {
				break
			}
			if time.Since(saved) > 20*time.Second {
				b.Fatalf("%q not served 20 s after the save", greeting)
			}
			time.Sleep(2 * time.Millisecond)
		}
		took = append(took, time.Since(saved))
		// A developer's pace: the old worker gone, the template's preloads done. Then the
		// page is looked at once more, by the worker that is to be replaced next: Django
		// imports a view at the first request, and a worker that had served none would
		// import the next save's view at once, with no reload to measure.
		time.Sleep(time.Second)
		get(b, c, url+"/")
	}
	reportTook(b, took)
	b.ReportMetric(float64(failed), "failed-requests")
}

// djangoPython is python when it imports Django (Debian's under /usr/bin/python3), else
// the venv's interpreter (Django 6.1).
func djangoPython(b *testing.B, python string) string {
	if python == "" {
		return herdtest.VenvPython(b)
	}
	herdtest.RequirePythonModule(b, python, "django", "python3-django")
	return python
}

func reportTook(b *testing.B, took []time.Duration) {
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
