package server

import (
	"html/template"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/herd-server/herd/supervisor/autoreload"
)

// errorPage answers every request with an HTML page showing why the code does not load,
// while State holds a failure; otherwise it passes requests to next. Development only: the
// page shows source paths and code to whoever asks. The traceback's frames in workerFiles
// (herd's worker) and in importlib are left out of the page: they sit above every import
// error and say nothing about the app (the log keeps them).
func errorPage(next http.Handler, st *autoreload.State, workerFiles ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-st.Settled():
		case <-r.Context().Done(): // the first workers are still booting: wait to know
			return
		}
		f := st.Current()
		if f == nil {
			next.ServeHTTP(w, r)
			return
		}
		p := pageData(f)
		p.Traceback = trimTraceback(p.Traceback, workerFiles)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusInternalServerError)
		_ = errorPageTemplate.Execute(w, p)
	})
}

// trimTraceback drops the frames of the worker's files and of the import machinery. A frame
// is its `  File "..."` line and the more indented source and caret lines under it.
func trimTraceback(traceback string, workerFiles []string) string {
	var out []string
	dropping := false
	for _, line := range strings.SplitAfter(traceback, "\n") {
		if m := frameLine.FindStringSubmatch(line); m != nil {
			dropping = slices.Contains(workerFiles, m[1]) || strings.HasPrefix(m[1], "<frozen importlib") ||
				strings.HasSuffix(m[1], "/importlib/__init__.py")
		} else if !strings.HasPrefix(line, "    ") {
			dropping = false // the exception line, or a chained traceback's header
		}
		if !dropping {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}

type page struct {
	Error     string
	File      string
	Line      int
	Traceback string
	Changed   []string
	At        string
}

func pageData(f *autoreload.Failure) page {
	p := page{Error: f.Err.Error(), Traceback: f.Traceback, Changed: f.Changed, At: f.At.Format("15:04:05")}
	p.File, p.Line = lastFrame(f.Traceback)
	return p
}

// frameLine is a Python traceback's location line: `  File "/app/views.py", line 12, in x`
// (a SyntaxError's has no ", in x").
var frameLine = regexp.MustCompile(`(?m)^\s*File "([^"]+)", line (\d+)`)

// lastFrame is the innermost location of a traceback: where the error is.
func lastFrame(traceback string) (string, int) {
	m := frameLine.FindAllStringSubmatch(traceback, -1)
	if len(m) == 0 {
		return "", 0
	}
	last := m[len(m)-1]
	line, _ := strconv.Atoi(last[2])
	return last[1], line
}

// html/template escapes every value: a traceback quotes source code, which may hold markup.
var errorPageTemplate = template.Must(template.New("error").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>herd: the app does not load</title>
<style>
body { font: 15px/1.5 system-ui, sans-serif; margin: 2em auto; max-width: 60em; padding: 0 1em; color: #222; }
h1 { color: #b00020; font-size: 1.4em; }
.where { font-family: ui-monospace, monospace; background: #fff3cd; padding: .4em .6em; }
pre { background: #f6f6f6; border-left: 4px solid #b00020; padding: 1em; overflow-x: auto; }
.note { color: #555; }
</style>
</head>
<body>
<h1>The app does not load</h1>
<p>{{.Error}}</p>
{{if .File}}<p class="where">{{.File}}, line {{.Line}}</p>{{end}}
{{if .Traceback}}<pre>{{.Traceback}}</pre>{{end}}
{{if .Changed}}<p class="note">Changed before this reload: {{range $i, $f := .Changed}}{{if $i}}, {{end}}{{$f}}{{end}}</p>{{end}}
{{if .Changed}}<p class="note">herd dev, reload at {{.At}}: save a fix and reload this page; the previous code is still loaded but is not served while this error stands.</p>
{{else}}<p class="note">herd dev, at start ({{.At}}): save a fix and reload this page; herd keeps running and starts the app as soon as it imports.</p>{{end}}
</body>
</html>
`))
