package server

import (
	"errors"
	"fmt"
	"io"
	"net"
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

// BenchmarkSaveToNewResponseDjango is BenchmarkSaveToNewResponse on a Django project made by
// django-admin startproject (an app, a view): from saving the view to its first answer of
// the new code, 20 saves, under Debian's Django 3.2 and the venv's 6.1; saving models.py too
// (a module the app server imported, so the project is imported again); and Django 6.1's
// runserver beside them. `make bench-reload` runs it; docs/development.md has the figures.
func BenchmarkSaveToNewResponseDjango(b *testing.B) {
	for _, c := range []struct {
		name, python string
		models       bool
	}{
		{"herd-dev-debian-view", "/usr/bin/python3", false},
		{"herd-dev-venv-view", "", false},
		{"herd-dev-venv-models", "", true},
	} {
		b.Run(c.name, func(b *testing.B) {
			python := djangoPython(b, c.python)
			for range b.N {
				dir := startDjangoProject(b, python, "v0")
				h := herdtest.Start(b, herdtest.Options{Command: "dev", Dir: dir, Args: []string{"mysite.wsgi", "--python", python}})
				h.WaitReady(1, 60*time.Second)
				stopped := 0
				reportDjangoSaves(b, dir, h.URL, c.models, func() {
					stopped++ // the old worker gone before the next save
					herdtest.Eventually(b, 20*time.Second, "the old worker stopped", func() bool {
						return h.Count(herdtest.IsMsg("worker stopped")) >= stopped
					})
				})
			}
		})
	}
	b.Run("runserver-venv-view", func(b *testing.B) {
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
			settle := func() {
				herdtest.Eventually(b, 30*time.Second, "runserver listening", func() bool {
					c, err := net.Dial("tcp", addr)
					if err == nil {
						_ = c.Close()
					}
					return err == nil
				})
				// Time is the subject: its reloader notes the files' modification times on
				// its first pass after the import, once a second, and gives no sign of it;
				// a save before that pass is never seen.
				time.Sleep(2 * time.Second)
			}
			settle()
			reportDjangoSaves(b, dir, "http://"+addr, false, settle)
		}
	})
}

// reportDjangoSaves saves the Django project's view 20 times (and models.py with it when
// models), and reports from each save to the new view's first answer; between saves it
// calls between, then looks at the page once. Requests that fail on the way (runserver
// restarts its process) are counted, not fatal.
func reportDjangoSaves(b *testing.B, dir, url string, models bool, between func()) {
	c := herdtest.Client()
	var took []time.Duration
	failed := 0
	get(b, c, url+"/") // the page is open before the first save
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
			body, err := fetchBody(c, url+"/")
			if err != nil {
				failed++
			} else if body == greeting {
				break
			}
			if time.Since(saved) > 20*time.Second {
				b.Fatalf("%q not served 20 s after the save", greeting)
			}
			time.Sleep(2 * time.Millisecond) // time is the subject: the measurement's resolution
		}
		took = append(took, time.Since(saved))
		between()
		// The page is looked at once more, as a developer does: Django imports a view at the
		// first request, and a worker that had served none would import the next save's view
		// at once, with no reload to measure.
		get(b, c, url+"/")
	}
	reportTook(b, took)
	b.ReportMetric(float64(failed), "failed-requests")
}

func fetchBody(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return string(body), err
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
	slices.Sort(took)
	b.ReportMetric(float64(medianOf(took).Milliseconds()), "ms-median")
	b.ReportMetric(float64(took[0].Milliseconds()), "ms-min")
	b.ReportMetric(float64(took[len(took)-1].Milliseconds()), "ms-max")
}
