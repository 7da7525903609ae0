package spawn

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// maxLine bounds one logged line: a worker that prints a megabyte without a newline is
// logged in pieces rather than held in memory. maxTraceback bounds one traceback event.
const (
	maxLine      = 16 << 10
	maxTraceback = 256 << 10
)

// tracebackSettle is how long a finished traceback waits for a chained one ("During handling
// of the above exception ...") before it is logged: Python writes a chain at once.
const tracebackSettle = 50 * time.Millisecond

// lineLogger turns a worker's output stream into log events, tagged with the worker's
// fields: one event per line, except that a Python traceback (with the line that announced
// it, such as the worker's "error in app for GET /x", and any chained tracebacks) is one
// event at error level, so that an app's exception is one record a log search finds whole,
// and is seen under --log-level warn. os/exec writes to it from one goroutine per stream.
type lineLogger struct {
	log    zerolog.Logger
	stream string
	mu     sync.Mutex
	buf    []byte

	tb    []string // the traceback being gathered; nil when none
	state tbState
	timer *time.Timer
	gen   int // which settle timer is current
}

type tbState int

const (
	tbNone   tbState = iota
	tbFrames         // inside "Traceback (most recent call last):", taking indented lines
	tbRaised         // after the exception line: a chained traceback may follow
)

const tracebackHead = "Traceback (most recent call last):"

// NewLineLogger makes log events of what a worker writes on stream.
func NewLineLogger(log zerolog.Logger, stream string) io.Writer {
	return &lineLogger{log: log, stream: stream}
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	var held string // an ordinary line of this write, kept back in case a traceback follows it
	hasHeld := false
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.buf = append(l.buf, p...)
			if len(l.buf) >= maxLine {
				line := l.takeLine()
				l.line(line, &held, &hasHeld)
			}
			break
		}
		l.buf = append(l.buf, p[:i]...)
		line := l.takeLine()
		l.line(line, &held, &hasHeld)
		p = p[i+1:]
	}
	if hasHeld {
		l.emit(held)
	}
	return n, nil
}

func (l *lineLogger) takeLine() string {
	line := string(bytes.TrimRight(l.buf, "\r"))
	l.buf = l.buf[:0]
	return line
}

// line takes one whole line.
func (l *lineLogger) line(line string, held *string, hasHeld *bool) {
	switch {
	case l.state == tbFrames && (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")):
		l.tb = append(l.tb, line)
	case l.state == tbFrames:
		l.tb = append(l.tb, line) // the exception: ValueError: boom
		l.state = tbRaised
		l.settle()
	case l.state == tbRaised && (line == "" || line == tracebackHead || strings.HasPrefix(line, " ") ||
		strings.HasPrefix(line, "During handling of the above exception") || strings.HasPrefix(line, "The above exception was the direct cause")):
		l.tb = append(l.tb, line)
		if line == tracebackHead {
			l.state = tbFrames
		}
	case line == tracebackHead:
		l.flushTraceback()
		l.tb = []string{line}
		if *hasHeld {
			l.tb = []string{*held, line} // "error in app for GET /x" heads its traceback
			*hasHeld = false
		}
		l.state = tbFrames
	default:
		l.flushTraceback()
		if *hasHeld {
			l.emit(*held)
		}
		*held, *hasHeld = line, true
	}
	if l.tb != nil && l.size() > maxTraceback {
		l.flushTraceback()
	}
}

func (l *lineLogger) size() int {
	n := 0
	for _, s := range l.tb {
		n += len(s) + 1
	}
	return n
}

// settle logs the traceback unless more of it comes within tracebackSettle.
func (l *lineLogger) settle() {
	l.gen++
	gen := l.gen
	if l.timer != nil {
		l.timer.Stop()
	}
	l.timer = time.AfterFunc(tracebackSettle, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.gen == gen {
			l.flushTraceback()
		}
	})
}

func (l *lineLogger) flushTraceback() {
	if l.tb == nil {
		return
	}
	l.gen++ // a pending settle timer has nothing left to do
	text := strings.TrimRight(strings.Join(l.tb, "\n"), "\n")
	l.tb, l.state = nil, tbNone
	l.log.Error().Str("stream", l.stream).Msg(text)
}

// emit logs an ordinary line: at the level Python's logging put in front of it
// (WARNING:app:..., ERROR:..., CRITICAL:...), else info.
func (l *lineLogger) emit(line string) {
	ev := l.log.Info()
	switch {
	case strings.HasPrefix(line, "ERROR:") || strings.HasPrefix(line, "CRITICAL:"):
		ev = l.log.Error()
	case strings.HasPrefix(line, "WARNING:"):
		ev = l.log.Warn()
	}
	ev.Str("stream", l.stream).Msg(line)
}
