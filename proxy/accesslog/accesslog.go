// Package accesslog writes one line per request in the formats log tools already read:
// Apache/nginx "combined", JSON lines, or a template of {fields}. It is a
// proxy.Handler.OnDone hook; it never changes a response.
package accesslog

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/herd-server/herd/proxy"
)

// Named formats. combined is Apache's and nginx's default
// ('%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"').
const (
	Combined = `{remote_host} - - [{time_clf}] "{method} {uri} {proto}" {status} {bytes_clf} "{referer}" "{user_agent}"`
	Common   = `{remote_host} - - [{time_clf}] "{method} {uri} {proto}" {status} {bytes_clf}`
)

// field appends one value of a request to a line. quoted values are escaped so that a
// client cannot forge a line or break the quoting: " and \ and control bytes become \xHH.
type field func(b []byte, rec *proxy.Record) []byte

var fields = map[string]field{
	"remote":       func(b []byte, r *proxy.Record) []byte { return appendEscaped(b, r.Request.RemoteAddr) },
	"remote_host":  func(b []byte, r *proxy.Record) []byte { return appendEscaped(b, clientHost(r)) },
	"remote_user":  func(b []byte, r *proxy.Record) []byte { return appendEscaped(b, remoteUser(r.Request)) },
	"time_unix":    func(b []byte, r *proxy.Record) []byte { return strconv.AppendInt(b, r.Start.Unix(), 10) },
	"time_unix_ms": func(b []byte, r *proxy.Record) []byte { return strconv.AppendInt(b, r.Start.UnixMilli(), 10) },
	"time_unix_us": func(b []byte, r *proxy.Record) []byte { return strconv.AppendInt(b, r.Start.UnixMicro(), 10) },
	"time_ctime":   func(b []byte, r *proxy.Record) []byte { return r.Start.AppendFormat(b, "Mon Jan _2 15:04:05 2006") },
	"time_clf":     func(b []byte, r *proxy.Record) []byte { return r.Start.AppendFormat(b, "02/Jan/2006:15:04:05 -0700") },
	"time": func(b []byte, r *proxy.Record) []byte {
		return r.Start.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	},
	"method": func(b []byte, r *proxy.Record) []byte { return appendEscaped(b, r.Request.Method) },
	"uri":    func(b []byte, r *proxy.Record) []byte { return appendEscaped(b, r.Request.RequestURI) },
	"path":   func(b []byte, r *proxy.Record) []byte { return appendEscaped(b, r.Request.URL.Path) },
	"query":  func(b []byte, r *proxy.Record) []byte { return appendEscaped(b, r.Request.URL.RawQuery) },
	"proto":  func(b []byte, r *proxy.Record) []byte { return appendEscaped(b, r.Request.Proto) },
	"host":   func(b []byte, r *proxy.Record) []byte { return appendEscaped(b, r.Request.Host) },
	"status": func(b []byte, r *proxy.Record) []byte { return strconv.AppendInt(b, int64(r.Status), 10) },
	"bytes":  func(b []byte, r *proxy.Record) []byte { return strconv.AppendInt(b, r.BytesOut, 10) },
	"bytes_clf": func(b []byte, r *proxy.Record) []byte {
		if r.BytesOut == 0 {
			return append(b, '-')
		}
		return strconv.AppendInt(b, r.BytesOut, 10)
	},
	"bytes_in": func(b []byte, r *proxy.Record) []byte { return strconv.AppendInt(b, r.BytesIn, 10) },
	"duration": func(b []byte, r *proxy.Record) []byte {
		return strconv.AppendFloat(b, r.Duration.Seconds(), 'f', 6, 64)
	},
	"duration_ms": func(b []byte, r *proxy.Record) []byte { return appendMs(b, r.Duration) },
	"duration_s":  func(b []byte, r *proxy.Record) []byte { return strconv.AppendInt(b, int64(r.Duration.Seconds()), 10) },
	"duration_ms_int": func(b []byte, r *proxy.Record) []byte {
		return strconv.AppendInt(b, r.Duration.Milliseconds(), 10)
	},
	"duration_us": func(b []byte, r *proxy.Record) []byte { return strconv.AppendInt(b, r.Duration.Microseconds(), 10) },
	"queue_ms":    func(b []byte, r *proxy.Record) []byte { return appendMs(b, r.QueueWait) },
	"worker": func(b []byte, r *proxy.Record) []byte {
		if r.Worker < 0 {
			return append(b, '-')
		}
		return strconv.AppendInt(b, int64(r.Worker), 10)
	},
	"referer":    header("Referer"),
	"user_agent": header("User-Agent"),
}

// header is a request header's value, or "-" when absent, as Apache logs it.
func header(name string) field {
	return func(b []byte, r *proxy.Record) []byte {
		v := r.Request.Header.Get(name)
		if v == "" {
			return append(b, '-')
		}
		return appendEscaped(b, v)
	}
}

// Format is a compiled line format.
type Format struct {
	json  bool
	parts []field
}

// Parse compiles "combined", "common", "json", or a template where {name} stands for a
// field (see Fields) and {header:Name} for a request header. A gunicorn access_log_format
// (%(h)s %(r)s ...) is taken as it is: its atoms become the fields (see gunicorn.go).
func Parse(spec string) (*Format, error) {
	switch spec {
	case "json":
		return &Format{json: true}, nil
	case "combined":
		spec = Combined
	case "common":
		spec = Common
	}
	if strings.Contains(spec, "%(") {
		var err error
		if spec, err = fromGunicorn(spec); err != nil {
			return nil, err
		}
	}
	f := &Format{}
	rest := spec
	for rest != "" {
		open := strings.IndexByte(rest, '{')
		if open < 0 {
			f.parts = append(f.parts, literal(rest))
			break
		}
		if open > 0 {
			f.parts = append(f.parts, literal(rest[:open]))
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return nil, fmt.Errorf("access-log-format: unclosed { in %q", spec)
		}
		name := rest[open+1 : open+end]
		fn, ok := fields[name]
		if h, isHeader := strings.CutPrefix(name, "header:"); isHeader && h != "" {
			fn, ok = header(h), true
		}
		if !ok {
			return nil, fmt.Errorf("access-log-format: unknown field {%s}; known: %s, {header:Name}; or combined, common, json", name, strings.Join(Fields(), ", "))
		}
		f.parts = append(f.parts, fn)
		rest = rest[open+end+1:]
	}
	return f, nil
}

// Fields lists the template field names, as {name}.
func Fields() []string {
	var out []string
	for k := range fields {
		out = append(out, "{"+k+"}")
	}
	slices.Sort(out)
	return out
}

func literal(s string) field {
	return func(b []byte, _ *proxy.Record) []byte { return append(b, s...) }
}

// Append appends the record's line, newline included.
func (f *Format) Append(b []byte, rec *proxy.Record) []byte {
	if f.json {
		return appendJSON(b, rec)
	}
	for _, p := range f.parts {
		b = p(b, rec)
	}
	return append(b, '\n')
}

// Logger writes each request's line to out with one Write.
type Logger struct {
	out    io.Writer
	format *Format
}

// New returns a Logger; out must be safe for concurrent Writes (logfile.File, or a
// Writer wrapped by Locked).
func New(out io.Writer, format *Format) *Logger { return &Logger{out: out, format: format} }

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// OnDone is the proxy.Handler.OnDone hook. A failed write is dropped: the access log must
// never fail a request.
func (l *Logger) OnDone(rec *proxy.Record) {
	bp := bufPool.Get().(*[]byte)
	b := l.format.Append((*bp)[:0], rec)
	_, _ = l.out.Write(b)
	*bp = b
	bufPool.Put(bp)
}

// Locked serializes Writes to w (stdout shared by goroutines).
func Locked(w io.Writer) io.Writer { return &lockedWriter{w: w} }

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func remoteHost(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// clientHost is the client's address as the app saw it in REMOTE_ADDR: the one a trusted
// proxy forwarded, else the peer's. "-" when there is none (a Unix socket's peer).
func clientHost(r *proxy.Record) string {
	h := r.Client
	if h == "" {
		h = remoteHost(r.Request.RemoteAddr)
	}
	if h == "" || h == "@" {
		return "-"
	}
	return h
}

// remoteUser is the user name of Basic authentication, "-" without one (gunicorn's %(u)s).
func remoteUser(r *http.Request) string {
	if u, _, ok := r.BasicAuth(); ok && u != "" {
		return u
	}
	return "-"
}

func appendMs(b []byte, d time.Duration) []byte {
	return strconv.AppendFloat(b, float64(d.Microseconds())/1000, 'f', 3, 64)
}

// appendEscaped writes s with ", \, control bytes and invalid UTF-8 as \xHH (nginx's
// escaping), so that one request is always one parseable line.
func appendEscaped(b []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f || c == '"' || c == '\\' {
				b = append(b, '\\', 'x', hex[c>>4], hex[c&15])
			} else {
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, '\\', 'x', hex[c>>4], hex[c&15])
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return b
}

const hex = "0123456789abcdef"

// appendJSON writes one JSON object per line with the fields a log pipeline wants.
func appendJSON(b []byte, rec *proxy.Record) []byte {
	r := rec.Request
	b = append(b, `{"time":"`...)
	b = rec.Start.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, `","remote":`...)
	b = appendJSONString(b, r.RemoteAddr)
	if rec.Client != "" && rec.Client != remoteHost(r.RemoteAddr) {
		b = append(b, `,"client":`...)
		b = appendJSONString(b, rec.Client)
	}
	b = append(b, `,"method":`...)
	b = appendJSONString(b, r.Method)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, r.URL.Path)
	b = append(b, `,"uri":`...)
	b = appendJSONString(b, r.RequestURI)
	b = append(b, `,"proto":`...)
	b = appendJSONString(b, r.Proto)
	b = append(b, `,"host":`...)
	b = appendJSONString(b, r.Host)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(rec.Status), 10)
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, rec.BytesIn, 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, rec.BytesOut, 10)
	b = append(b, `,"duration_ms":`...)
	b = appendMs(b, rec.Duration)
	b = append(b, `,"queue_ms":`...)
	b = appendMs(b, rec.QueueWait)
	if rec.Worker >= 0 {
		b = append(b, `,"worker":`...)
		b = strconv.AppendInt(b, int64(rec.Worker), 10)
	}
	if v := r.Header.Get("Referer"); v != "" {
		b = append(b, `,"referer":`...)
		b = appendJSONString(b, v)
	}
	if v := r.Header.Get("User-Agent"); v != "" {
		b = append(b, `,"user_agent":`...)
		b = appendJSONString(b, v)
	}
	return append(b, "}\n"...)
}

func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
