package spawn

import (
	"bytes"
	"io"
	"sync"

	"github.com/rs/zerolog"
)

// maxLine bounds one logged line: a worker that prints a megabyte without a newline is
// logged in pieces rather than held in memory.
const maxLine = 16 << 10

// lineLogger turns a worker's output stream into one log event per line, tagged with the
// worker's fields. os/exec writes to it from one goroutine per stream.
type lineLogger struct {
	log    zerolog.Logger
	stream string
	mu     sync.Mutex
	buf    []byte
}

// NewLineLogger makes one log event of each line a worker writes on stream.
func NewLineLogger(log zerolog.Logger, stream string) io.Writer {
	return &lineLogger{log: log, stream: stream}
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.buf = append(l.buf, p...)
			if len(l.buf) >= maxLine {
				l.emit()
			}
			break
		}
		l.buf = append(l.buf, p[:i]...)
		l.emit()
		p = p[i+1:]
	}
	return n, nil
}

func (l *lineLogger) emit() {
	line := bytes.TrimRight(l.buf, "\r")
	l.log.Info().Str("stream", l.stream).Msg(string(line))
	l.buf = l.buf[:0]
}
