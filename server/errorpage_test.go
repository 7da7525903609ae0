package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/herd-server/herd/supervisor"
	"github.com/herd-server/herd/supervisor/autoreload"
)

// What CPython 3.11 prints for a module that does not compile, quoting markup from it.
const syntaxErrorTrace = `Traceback (most recent call last):
  File "/root/.cache/herd/worker/herd_worker_0123456789abcdef/boot.py", line 906, in load_app
    obj = importlib.import_module(module)
          ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/lib/python3.11/importlib/__init__.py", line 126, in import_module
    return _bootstrap._gcd_import(name[level:], package, level)
  File "<frozen importlib._bootstrap>", line 1204, in _gcd_import
  File "/tmp/app/views.py", line 2
    return [b"<script>alert(1)</script>" if x else ]
                                                   ^
SyntaxError: invalid syntax
`

func TestErrorPage(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "app") })
	st := &autoreload.State{}
	// The worker's package runs from herd's cache, or from the copy in the runtime directory.
	h := errorPage(next, st, "/root/.cache/herd/worker/herd_worker_0123456789abcdef/boot.py",
		"/tmp/herd-1/herd_worker_0123456789abcdef/boot.py", "/tmp/herd-1/worker.py")

	if body := servePage(t, h, http.StatusOK); body != "app" {
		t.Fatalf("no failure: got %q, want the app", body)
	}

	st.Fail(&supervisor.BootError{WorkerID: 3, Message: "SyntaxError: invalid syntax", Traceback: syntaxErrorTrace}, []string{"/tmp/app/views.py"})
	body := servePage(t, h, http.StatusInternalServerError)
	for _, want := range []string{
		`/tmp/app/views.py, line 2`,
		`&lt;script&gt;alert(1)&lt;/script&gt;`,
		`SyntaxError: invalid syntax`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "<script>") {
		t.Fatalf("the traceback's markup reached the page unescaped:\n%s", body)
	}
	for _, internal := range []string{"herd_worker", "importlib", "_gcd_import"} {
		if strings.Contains(body, internal) {
			t.Errorf("page shows herd's own frames (%s):\n%s", internal, body)
		}
	}

	st.Clear()
	if body := servePage(t, h, http.StatusOK); body != "app" {
		t.Fatalf("after the fix: got %q, want the app", body)
	}
}

func servePage(t *testing.T, h http.Handler, wantStatus int) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != wantStatus {
		t.Fatalf("status %d, want %d", rec.Code, wantStatus)
	}
	return rec.Body.String()
}

func TestLastFrame(t *testing.T) {
	for _, tc := range []struct {
		trace string
		file  string
		line  int
	}{
		{syntaxErrorTrace, "/tmp/app/views.py", 2},
		{"Traceback (most recent call last):\n  File \"/a.py\", line 9, in <module>\n    import b\n  File \"/b.py\", line 1, in <module>\n    1/0\nZeroDivisionError: division by zero\n", "/b.py", 1},
		{"", "", 0},
	} {
		file, line := lastFrame(tc.trace)
		if file != tc.file || line != tc.line {
			t.Errorf("lastFrame = %s:%d, want %s:%d", file, line, tc.file, tc.line)
		}
	}
	var nilState *autoreload.State
	nilState.Fail(errors.New("x"), nil) // production: records nothing
	if nilState.Current() != nil {
		t.Fatal("a nil State has a failure")
	}
}

// Development mode, code that does not import at start: a request made while the first
// workers boot waits for their outcome, then gets the error page, which says so.
func TestErrorPageAtStart(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "app") })
	st := &autoreload.State{}
	loop := &autoreload.Loop{State: st}
	outcome := make(chan error, 1)
	loop.AwaitFirstBoot(outcome)
	h := errorPage(next, st, "/tmp/herd-1/worker.py")

	got := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		got <- rec
	}()
	select {
	case rec := <-got:
		t.Fatalf("answered before the first generation's outcome: %d %q", rec.Code, rec.Body)
	case <-time.After(50 * time.Millisecond):
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); loop.Run(ctx) }()
	defer func() { cancel(); <-done }()
	outcome <- &supervisor.BootError{WorkerID: 1, Message: "SyntaxError: invalid syntax", Traceback: syntaxErrorTrace}
	rec := <-got
	body := rec.Body.String()
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status %d, want the 500 error page", rec.Code)
	}
	for _, want := range []string{`/tmp/app/views.py, line 2`, "at start"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
	st.Clear() // a reload with the fix
	if body := servePage(t, h, http.StatusOK); body != "app" {
		t.Fatalf("after the fix: got %q, want the app", body)
	}
}
