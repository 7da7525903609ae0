package spawn

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
	"github.com/rs/zerolog"
)

type logSink struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }

func (s *logSink) events(t *testing.T) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		if line == "" {
			continue
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

const chained = `herd-worker[1] error in app for GET /boom
Traceback (most recent call last):
  File "/app/views.py", line 3, in boom
    int("x")
ValueError: invalid literal for int() with base 10: 'x'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/app/views.py", line 5, in boom
    raise RuntimeError("boom")
RuntimeError: boom
`

// TestTracebackOneEvent: an app's traceback, chained ones and the line announcing it included,
// is one event at error level, written in one piece or line by line; lines around it stay
// info, and Python logging's WARNING:/ERROR: lines take that level.
func TestTracebackOneEvent(t *testing.T) {
	for _, pieces := range []int{1, 3, 200} {
		sink := &logSink{}
		w := NewLineLogger(zerolog.New(sink), "stderr")
		text := "starting\n" + chained + "WARNING:django:Not Found: /x\nafter\n"
		step := (len(text) + pieces - 1) / pieces
		for i := 0; i < len(text); i += step {
			_, _ = w.Write([]byte(text[i:min(i+step, len(text))]))
		}
		herdtest.Eventually(t, 5*time.Second, "the events", func() bool { return len(sink.events(t)) >= 4 })
		evs := sink.events(t)
		var levels []string
		var msg string
		for _, ev := range evs {
			levels = append(levels, ev["level"].(string))
			if ev["level"] == "error" {
				msg = ev["message"].(string)
			}
		}
		want := "info,error,warn,info"
		if pieces > 1 {
			// The line announcing it came in another write: it is an event of its own.
			want = "info,info,error,warn,info"
		}
		if got := strings.Join(levels, ","); got != want && !(pieces == 3 && got == "info,error,warn,info") {
			t.Fatalf("%d pieces: levels %v\n%v", pieces, levels, evs)
		}
		if pieces == 1 && msg != strings.TrimRight(chained, "\n") {
			t.Fatalf("traceback event:\n%s", msg)
		}
		if !strings.Contains(msg, "ValueError") || !strings.Contains(msg, "RuntimeError: boom") {
			t.Fatalf("%d pieces: traceback event:\n%s", pieces, msg)
		}
	}
}

// TestTracebackAtEnd: a traceback that is the last thing written is logged all the same.
func TestTracebackAtEnd(t *testing.T) {
	sink := &logSink{}
	w := NewLineLogger(zerolog.New(sink), "stderr")
	_, _ = w.Write([]byte("Traceback (most recent call last):\n  File \"x.py\", line 1\nKeyError: 'k'\n"))
	herdtest.Eventually(t, 5*time.Second, "the traceback", func() bool { return len(sink.events(t)) > 0 })
	evs := sink.events(t)
	if len(evs) != 1 || evs[0]["level"] != "error" || !strings.HasSuffix(evs[0]["message"].(string), "KeyError: 'k'") {
		t.Fatalf("%v", evs)
	}
}

func TestExitStatusNamesTheSignal(t *testing.T) {
	if got := (ExitStatus{Code: -1, Signal: syscall.SIGABRT}).String(); got != "killed by SIGABRT (aborted)" {
		t.Fatal(got)
	}
}
