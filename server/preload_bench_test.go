package server

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// BenchmarkPreloadDjango sets herd with and without --preload beside gunicorn with and
// without it, 4 workers each, on the Django project fixture (scripts/testapps/djangoproject.py,
// the admin, under the venv's Django 6.1): the time from the start to the first 200, and
// the total PSS of the server's processes after 400 requests to the admin's login page.
// bench/ is the side-by-side harness for throughput; this is its memory and start-up
// companion for --preload:
//
//	go test ./server -run '^$' -bench PreloadDjango -benchtime 3x
func BenchmarkPreloadDjango(b *testing.B) {
	python := herdtest.VenvPython(b)
	dir := filepath.Join(herdtest.RepoRoot(b), "scripts", "testapps")
	db := filepath.Join(b.TempDir(), "db.sqlite3")
	env := append(os.Environ(), "HERD_DJANGO_DB="+db)
	migrate := exec.Command(python, "-c", "import djangoproject") // migrates the new database once
	migrate.Dir, migrate.Env = dir, env
	if out, err := migrate.CombinedOutput(); err != nil {
		b.Fatalf("migrate: %v\n%s", err, out)
	}
	herd := herdtest.Binary(b)
	gunicorn := filepath.Join(filepath.Dir(python), "gunicorn")
	for _, c := range []struct {
		name string
		argv func(addr string) []string
	}{
		{"herd", func(addr string) []string {
			return []string{herd, "serve", "djangoproject:application", "--python", python, "-w", "4", "--http", addr, "--access-log", "off"}
		}},
		{"herd-preload", func(addr string) []string {
			return []string{herd, "serve", "djangoproject:application", "--python", python, "-w", "4", "--http", addr, "--access-log", "off", "--preload"}
		}},
		{"gunicorn", func(addr string) []string {
			return []string{gunicorn, "-w", "4", "-b", addr, "djangoproject:application"}
		}},
		{"gunicorn-preload", func(addr string) []string {
			return []string{gunicorn, "-w", "4", "-b", addr, "--preload", "djangoproject:application"}
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				addr := herdtest.FreeAddr(b)
				argv := c.argv(addr)
				cmd := exec.Command(argv[0], argv[1:]...)
				cmd.Dir, cmd.Env = dir, env
				cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
				started := time.Now()
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				first := firstOK(b, "http://"+addr+"/admin/login/", started)
				c := &http.Client{Timeout: 10 * time.Second}
				for range 400 {
					resp, err := c.Get("http://" + addr + "/admin/login/")
					if err != nil {
						b.Fatal(err)
					}
					resp.Body.Close()
				}
				pss, procs := treePss(b, cmd.Process.Pid)
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				go func() { <-ctx.Done(); _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }()
				_ = cmd.Wait()
				cancel()
				b.ReportMetric(float64(first.Milliseconds()), "ms-first-200")
				b.ReportMetric(float64(pss>>20), "MiB-pss")
				b.ReportMetric(float64(procs), "processes")
			}
		})
	}
}

// firstOK polls url until it answers 200, and returns how long after started that was.
func firstOK(b *testing.B, url string, started time.Time) time.Duration {
	c := &http.Client{Timeout: time.Second}
	// A fixed pace: the wait is the measurement (start to first 200).
	if !herdtest.PollEvery(time.Minute, 5*time.Millisecond, func() bool {
		resp, err := c.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}) {
		b.Fatalf("%s: no 200 within a minute", url)
	}
	return time.Since(started)
}
