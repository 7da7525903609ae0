package proxy

import (
	"net/http"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Record is what happened to one request, handed to Handler.OnDone after the response.
type Record struct {
	Request   *http.Request
	Start     time.Time
	Duration  time.Duration // from the request's arrival to the end of its response
	QueueWait time.Duration // time spent waiting for a free worker slot
	Status    int           // the status the client got; 499 when it left first
	BytesIn   int64         // request body bytes
	BytesOut  int64         // response body bytes written to the client
	Worker    int           // the worker id that served it, -1 when none did
	// Client is the client's address as the app got it in REMOTE_ADDR: the one a trusted
	// proxy (--forwarded-allow-ips) forwarded, else the peer's; "" when not known.
	Client string
}

// LogAccess returns an OnDone hook that writes one zerolog line per request.
func LogAccess(log zerolog.Logger) func(*Record) {
	return func(rec *Record) {
		r := rec.Request
		ev := log.Info().
			Str("method", r.Method).
			Str("path", r.URL.Path).
			Int("status", rec.Status).
			Int64("bytes", rec.BytesOut).
			Str("uri", r.RequestURI).
			Dur("duration_ms", rec.Duration).
			Str("remote", r.RemoteAddr)
		if rec.Client != "" {
			ev = ev.Str("client", rec.Client)
		}
		if rec.Worker >= 0 {
			ev = ev.Int("worker", rec.Worker)
		}
		ev.Send()
	}
}

var recordPool = sync.Pool{New: func() any { return new(Record) }}
