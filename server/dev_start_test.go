package server

import (
	"fmt"
	"html"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

const msgDoesNotLoad = "the app does not load: requests get the error page until a fix is saved"

const missingImportApp = `"""Imports a module that is not installed."""

import os
import herd_no_such_module


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"never"]
`

// The line of missingImportApp that fails.
const missingImportLine = 4

// Code that does not import when herd dev starts: herd keeps running, serves the error page
// to every request, shows the traceback once, and serves the app once a fix is saved. (herd
// serve without --reload exits 3 instead: TestAppThatCannotImportExitsWithTraceback.)
func TestDevBrokenAtStart(t *testing.T) {
	t.Run("SyntaxError", func(t *testing.T) {
		checkBrokenAtStart(t, brokenApp, brokenLine, "SyntaxError: invalid syntax", "dev-error-page-at-start.png")
	})
	t.Run("ImportError", func(t *testing.T) {
		checkBrokenAtStart(t, missingImportApp, missingImportLine, "ModuleNotFoundError: No module named 'herd_no_such_module'", "")
	})
}

// checkBrokenAtStart starts herd dev on source, which does not import, and checks the error
// page (in chromium too when screenshot is named); then it saves the example app and waits
// for its answer from the same herd process.
func checkBrokenAtStart(t *testing.T, source string, line int, wantError, screenshot string) {
	dir := herdtest.CopyExample(t)
	appFile := filepath.Join(dir, "app.py")
	if err := os.WriteFile(appFile, []byte(source), 0o644); err != nil {
		t.Fatal(err)
	}
	h := herdtest.Start(t, herdtest.Options{Command: "dev", Dir: dir, Args: []string{"app:app"}})
	if _, _, ok := h.WaitEvent(0, 20*time.Second, herdtest.IsMsg(msgDoesNotLoad)); !ok {
		t.Fatal("herd dev did not report that the app does not load")
	}
	c := herdtest.Client()
	where := fmt.Sprintf("%s, line %d", appFile, line)
	for range 3 { // every request, not just the first
		resp, err := c.Get(h.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		page := string(body)
		if resp.StatusCode != 500 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("status %d, %s: want the 500 HTML error page", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		for _, want := range []string{where, html.EscapeString(wantError), "at start"} {
			if !strings.Contains(page, want) {
				t.Fatalf("error page lacks %q:\n%s", want, page)
			}
		}
	}
	if screenshot != "" {
		t.Run("rendered in chromium", func(t *testing.T) {
			checkInChromium(t, h.URL+"/", screenshot, []string{appFile, fmt.Sprintf("line %d", line), wantError})
		})
	}

	from := len(h.Events())
	setGreeting(t, dir, "Fixed at last!")
	waitForBody(t, c, h.URL+"/", "Fixed at last!\n", 20*time.Second, true)
	if _, _, ok := h.WaitEvent(from, 10*time.Second, isReloadedEvent); !ok {
		t.Fatal("no reloaded event after the fix")
	}
	if !h.Running() {
		t.Fatal("herd exited")
	}
	traces := h.Count(func(e herdtest.Event) bool {
		return strings.Contains(e.Msg(), "Traceback (most recent call last)")
	})
	if traces != 1 {
		t.Errorf("the terminal showed the traceback %d times, want once", traces)
	}
	// While herd waited for the fix it did not start the broken code again and again.
	if n := h.Count(herdtest.IsMsg("worker ready")); n != 1 {
		t.Errorf("%d workers got ready, want 1: the fixed generation's", n)
	}
	if n := h.Count(func(e herdtest.Event) bool { return strings.HasPrefix(e.Msg(), "the app could not be imported") }); n != 1 {
		t.Errorf("%d import failures logged, want 1: the broken first generation is not retried before a save", n)
	}
}
