package server

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
	"github.com/herd-server/herd/supervisor/spawn"
)

// startDjangoProject makes a Django project as a developer does, with python's own
// django-admin: `startproject mysite`, `startapp polls`, a view at / through polls/urls.py,
// the app in INSTALLED_APPS. It returns the project's directory; the view answers greeting.
func startDjangoProject(t testing.TB, python, greeting string) string {
	t.Helper()
	dir := t.TempDir()
	run := func(args ...string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, python, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", python, strings.Join(args, " "), err, out)
		}
	}
	run("-m", "django", "startproject", "mysite", ".")
	run("manage.py", "startapp", "polls")
	setDjangoView(t, dir, greeting)
	urls := "from django.urls import path\n\nfrom . import views\n\nurlpatterns = [path('', views.index, name='index')]\n"
	if err := os.WriteFile(filepath.Join(dir, "polls", "urls.py"), []byte(urls), 0o644); err != nil {
		t.Fatal(err)
	}
	edit := func(name string, re *regexp.Regexp, repl string) {
		path := filepath.Join(dir, "mysite", name)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		out := re.ReplaceAllString(string(b), repl)
		if out == string(b) {
			t.Fatalf("%s: %s not found", name, re)
		}
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	edit("urls.py", regexp.MustCompile(`from django\.urls import path`), "from django.urls import include, path")
	edit("urls.py", regexp.MustCompile(`(path\(['"]admin/['"], admin\.site\.urls\),)`), "$1\n    path('', include('polls.urls')),")
	edit("settings.py", regexp.MustCompile(`(['"]django\.contrib\.staticfiles['"],)`), "$1\n    'polls',")
	return dir
}

// setDjangoView saves polls/views.py with a view that answers greeting, as an editor does.
func setDjangoView(t testing.TB, dir, greeting string) {
	t.Helper()
	src := fmt.Sprintf("from django.http import HttpResponse\n\n\ndef index(request):\n    return HttpResponse(%q)\n", greeting)
	if err := os.WriteFile(filepath.Join(dir, "polls", "views.py"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDevDjangoProject: herd dev on a real Django project (the venv's Django 6.1). Saving
// the view, which the app server has not imported (Django imports views with the URLconf,
// at the first request), is served by a worker forked from the same app server: nothing
// to import but the view. Saving models.py, which it imported (apps.populate), makes it
// stale: a new app server, forked from the template, imports the project again.
func TestDevDjangoProject(t *testing.T) {
	python := herdtest.VenvPython(t)
	dir := startDjangoProject(t, python, "v0")
	h := herdtest.Start(t, herdtest.Options{Command: "dev", Dir: dir, Args: []string{"mysite.wsgi", "--python", python, "--log-level", "debug"}})
	h.WaitReady(1, 60*time.Second)
	c := herdtest.Client()
	waitForBody(t, c, h.URL+"/", "v0", 20*time.Second, false)
	var took []time.Duration
	for i := range 6 {
		greeting := fmt.Sprintf("view save %d", i)
		setDjangoView(t, dir, greeting)
		took = append(took, waitForBody(t, c, h.URL+"/", greeting, 20*time.Second, false))
	}
	t.Logf("Django 6.1 project, saving the view: median %s (%v)", medianOf(took).Round(time.Millisecond), took)
	if n := h.Count(herdtest.IsMsg(spawn.MsgForkServerStale)); n != 0 {
		t.Errorf("%d app servers stale after saving the view only", n)
	}
	if n := h.Count(herdtest.IsMsg(spawn.MsgForkServerReady)); n != 2 {
		t.Errorf("%d fork servers started, want the template and one app server", n)
	}

	from := len(h.Events())
	models := filepath.Join(dir, "polls", "models.py")
	b, err := os.ReadFile(models)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, models, string(b)+"\n\nGREETING = 'from models'\n")
	setDjangoView(t, dir, "models saved") // as one burst: one reload
	waitForBody(t, c, h.URL+"/", "models saved", 20*time.Second, false)
	ev, _ := waitMsg(t, h, from, 10*time.Second, spawn.MsgForkServerStale)
	if !strings.HasSuffix(ev.Str("changed"), "models.py") {
		t.Fatalf("stale because of %q, want models.py", ev.Str("changed"))
	}
}
