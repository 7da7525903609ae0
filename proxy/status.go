package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/herd-server/herd/internal/logevery"
)

// What a request that failed before a worker answered gets: one status per kind of failure,
// decided in one place, and the short answer that carries it.

// requestStatus is the HTTP status the client sees for a request that failed before a
// worker answered: one place, so that every path maps the same failure the same way.
func requestStatus(err error) int {
	var maxErr *http.MaxBytesError
	switch {
	case errors.Is(err, errBodyTooLarge), errors.As(err, &maxErr):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errHeadersTooLarge):
		return http.StatusRequestHeaderFieldsTooLarge
	case errors.Is(err, errBodyTimeout):
		return http.StatusRequestTimeout
	case errors.Is(err, errBadBody), errors.Is(err, errBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, errNotMounted):
		return http.StatusNotFound
	case errors.Is(err, errNoTempFile), errors.Is(err, errTempSpace):
		return http.StatusServiceUnavailable
	case errors.Is(err, errDiskFull):
		return http.StatusInsufficientStorage
	case errors.Is(err, errTempFile):
		return http.StatusInternalServerError
	case errors.Is(err, context.Canceled):
		return statusClientClosed
	case errors.Is(err, os.ErrDeadlineExceeded):
		// The pool's per-request deadline (--timeout) ran out while the worker held the
		// request; the supervisor kills that worker.
		return http.StatusGatewayTimeout
	case isUnavailable(err):
		return http.StatusServiceUnavailable
	default:
		return http.StatusBadGateway
	}
}

// statusClientClosed is nginx's 499: the client left before the answer. Only logged.
const statusClientClosed = 499

var (
	errBodyTooLarge    = errors.New("request body larger than the limit")
	errHeadersTooLarge = errors.New("request headers too large for a uwsgi packet")
	errBadBody         = errors.New("could not read the request body")
	errBodyTimeout     = errors.New("the request body stopped coming for --body-timeout")
	errWorkerFailed    = errors.New("worker failed")
	errBadRequest      = errors.New("malformed request")
	errNotMounted      = errors.New("path outside the --mount prefix")
	errAborted         = errors.New("response aborted after its head")
	// errNoTempFile: no descriptor left for a temporary file (TempFiles, or the process's
	// open-file limit): a passing shortage of the server's, 503.
	errNoTempFile = errors.New("no temporary file to spare")
	// errTempSpace: --temp-space is used up: 503 as well.
	errTempSpace = errors.New("no room left in --temp-space")
	// errDiskFull: the disk of the temporary files is full: 507, the server's storage.
	errDiskFull = errors.New("no space left for temporary files")
	// errTempFile: a temporary file failed otherwise: the server's fault, 500.
	errTempFile = errors.New("temporary file failed")
	// errBodyBeforeHead: a response read whole before its head goes out broke (a body
	// shorter than its Content-Length), so the client can still get a 502.
	errBodyBeforeHead = errors.New("worker response body cut short")
)

// Unavailable is implemented by pool errors that mean "no capacity now" (queue full, queue
// timeout, shutting down) so that the proxy can answer 503 without importing the pool.
type Unavailable interface{ Unavailable() bool }

func isUnavailable(err error) bool {
	var u Unavailable
	return errors.As(err, &u) && u.Unavailable()
}

// refuseHost answers 400 to a request whose host (:authority, Host) holds bytes no host
// name, address or port holds: it would reach the app as HTTP_HOST, and its URLs.
func (h *Handler) refuseHost(w http.ResponseWriter, r *http.Request) {
	status := h.fail(w, r, fmt.Errorf("%w: bad host %q", errBadRequest, r.Host))
	if h.OnDone != nil {
		h.OnDone(&Record{Request: r, Start: time.Now(), Status: status, Worker: -1})
	}
}

// warnShort logs that the master did without one of its own resources, at most every
// 10 s (every) with how often it happened since; a full disk as an error.
func (h *Handler) warnShort(every *logevery.Every, err error, msg string) {
	ok, missed := every.Allow()
	if !ok {
		return
	}
	ev := h.Log.Warn()
	if errors.Is(err, errDiskFull) {
		ev = h.Log.Error()
	}
	ev.Err(err).Int64("times_since_last_line", missed).Msg(msg)
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) int {
	status := requestStatus(err)
	if status == statusClientClosed {
		return status
	}
	switch {
	case errors.Is(err, errNoTempFile), errors.Is(err, errTempSpace), errors.Is(err, errDiskFull):
		// The master's own resources: a flood repeats it for every request.
		h.warnShort(&h.refused, err, "request refused: the server has no room for its body")
	default:
		ev := h.Log.Warn()
		switch status {
		case http.StatusBadGateway:
			ev = h.Log.Error()
		case http.StatusNotFound: // a scanner's probes outside the mount are no news
			ev = h.Log.Debug()
		}
		ev.Err(err).Int("status", status).Str("method", r.Method).Str("path", r.URL.Path).Msg("request failed")
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeShortStatus(w, status)
	return status
}

// writeShortStatus answers with the status and its reason phrase as a one-line body.
func writeShortStatus(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(http.StatusText(status))+1))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, http.StatusText(status)+"\n")
}
