// Package proxy is herd's front end: it turns client requests into uwsgi requests, hands
// them to a worker connection it gets from the pool, and streams the worker's response back.
//
// It never starts or stops a worker; it only asks a Backend for a connection and gives it
// back, saying whether it can carry another request.
package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/herd-server/herd/internal/fdbudget"
	"github.com/herd-server/herd/internal/logevery"
	"github.com/herd-server/herd/protocol"
	"github.com/herd-server/herd/proxy/h1"
)

// Backend hands out worker slots. The supervisor's pool is the real one (the master adapts
// it); the proxy needs no more than this.
type Backend interface {
	Acquire(ctx context.Context) (Lease, error)
}

// Lease is one worker slot held by one request, from its dispatch until the worker's answer
// has been read: every capability the request path uses of a worker is here.
type Lease interface {
	// WorkerID names the worker, for logs and the access log.
	WorkerID() int
	// Describe shows which request the slot carries on status pages; since is when the
	// request arrived.
	Describe(method, uri string, since time.Time)
	// Send sends the request: its uwsgi packet, then its body from mem or, when not nil,
	// from file. EPIPE or ECONNRESET, from it or from the first read of the answer, means
	// the worker did not read the request.
	Send(packet, mem []byte, file io.Reader) error
	// Reader reads the worker's answers. It outlives the request: bytes it buffered belong
	// to the connection, not to one answer.
	Reader() *bufio.Reader
	// Release gives the slot back; reusable=false when the connection may not carry
	// another request (the answer was not read to its end, or the connection failed).
	Release(reusable bool)
	// Stream is the request's stream when the worker speaks the framed link (stream.go);
	// nil when it speaks uwsgi packets through Send and Reader.
	Stream() Stream
}

// Handler serves HTTP requests through the workers.
type Handler struct {
	Backend Backend
	Log     zerolog.Logger
	// OnDone, when set, is called once per request after its response, with what happened
	// to it: the access log and the metrics hang here.
	OnDone func(*Record)
	// BodyBuffer is how much of a request body is held in memory; the rest spills to an
	// unlinked temporary file in TempDir.
	BodyBuffer int64
	// BodyMemory bounds the request bodies, and the answers over 64 KiB read whole
	// (ResponseBuffer), held in memory at once across requests: past it a request body
	// spills to a temporary file however small, and an answer goes through a spool file
	// (256 uploads of 1 MiB at once made the master 290 MiB). 0: no bound.
	BodyMemory int64
	memory     memory
	// MaxBodySize refuses larger bodies with 413; 0 means no limit.
	MaxBodySize int64
	TempDir     string
	// TempFiles bounds the descriptors of temporary files held at once (a spilled body one,
	// a spooled answer two), out of the master's open-file limit; nil: no bound. A body
	// that cannot have one is refused with 503; an answer goes through unspooled.
	TempFiles *fdbudget.Files
	// TempSpace bounds the bytes in temporary files at once (spilled bodies, spooled
	// answers); 0: no bound but the disk's. A body past it is refused with 503; an answer
	// goes through unspooled.
	TempSpace int64
	tempSpace budget
	// refused and unspooled rate-limit the log lines of what was done without the master's
	// own resources (a flood repeats them for every request): bodies refused, answers that
	// went through unspooled.
	refused, unspooled logevery.Every
	// HTTPS marks every request as https; a request that came over TLS (r.TLS) is one
	// whatever this says.
	HTTPS bool
	// TrustedProxies are the peers whose X-Forwarded-* and Forwarded headers set
	// REMOTE_ADDR and the scheme; from any other peer those headers are stripped.
	TrustedProxies *TrustList
	// ResponseBuffer is the largest response body read whole from the worker before the
	// client gets it, so that the worker is free again whatever the client's speed. Larger
	// responses go to a file first (ResponseSpool); streaming ones are copied through as the
	// client takes them.
	ResponseBuffer int64
	// ResponseSpool is the largest response body (by its Content-Length) that is written to
	// an unlinked temporary file in TempDir when it is over ResponseBuffer, so that a slow
	// client of a large answer does not hold a worker either (nginx's proxy temp files).
	// Larger ones, and any when it is 0, go through as the client reads.
	ResponseSpool int64
	// Mount is the --mount prefix ("" for the root): it becomes SCRIPT_NAME and leaves
	// PATH_INFO; requests outside it get 404 without reaching a worker.
	Mount string
	// AddHeaders (--add-header) are set on every worker's answer that lacks them.
	AddHeaders http.Header
	// WebSockets, when set, takes WebSocket handshakes to framed (ASGI) workers and counts
	// the sockets (websocket.go); nil passes them to the app as plain requests.
	WebSockets *WebSockets
}

// MemoryInUse is how many bytes of --body-memory bodies and buffered answers count now.
func (h *Handler) MemoryInUse() int64 {
	inUse, _ := h.memory.held()
	return inUse
}

// MemoryKept is how many bytes of --body-memory buffers kept for reuse count now.
func (h *Handler) MemoryKept() int64 {
	inUse, all := h.memory.held()
	return all - inUse
}

// TempBytes is how many bytes of --temp-space temporary files count now.
func (h *Handler) TempBytes() int64 { return h.tempSpace.used.Load() }

// maxAttempts bounds how often one request is offered to a worker. Only requests that never
// reached a worker are retried: a failed connect or a failed write of the request.
const maxAttempts = 5

var packetPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// copyBufPool holds the buffers a response body passes through: 64 KiB, so that a body up to
// that size is read whole without allocating (a 64 KiB make per response cost the master a
// quarter of its CPU in the allocator and the GC).
var copyBufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

const copyBufSize = 64 << 10

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h1.ValidHost(r.Host) {
		// herd's HTTP/1 server refuses such a Host itself; HTTP/2's :authority comes
		// here unchecked by net/http.
		h.refuseHost(w, r)
		return
	}
	// The record is pooled: the OnDone hooks (metrics, access log) use it before they return,
	// and nothing of the exchange outlives ServeHTTP (the spool's sender is waited for).
	rec := recordPool.Get().(*Record)
	*rec = Record{Request: r, Start: time.Now(), Worker: -1}
	defer func() {
		if h.OnDone != nil {
			rec.Duration = time.Since(rec.Start)
			h.OnDone(rec)
		}
		*rec = Record{}
		recordPool.Put(rec)
	}()

	if h.serveWebSocket(w, r, rec) { // websocket.go
		return
	}
	body, err := h.readBody(r)
	if err != nil {
		rec.Status = h.fail(w, r, err)
		return
	}
	defer body.Close()

	var varsArr [48]protocol.Var
	vars := RequestVars(varsArr[:0], r, h.connInfo(r), body.size)
	rec.Client = vars[remoteAddrVar].Value // the access log shows whom the app saw
	vars, mounted := mountVars(vars, h.Mount)
	if !mounted {
		rec.Status = h.fail(w, r, errNotMounted)
		return
	}
	if err := h.forward(w, r, vars, body, rec); errors.Is(err, errAborted) {
		// The status line is out already: abort the client connection rather than
		// pretend the truncated body is whole.
		panic(http.ErrAbortHandler)
	}
}

// connInfo is what the request's connection tells RequestVars.
func (h *Handler) connInfo(r *http.Request) ConnInfo {
	info := ConnInfo{RemoteAddr: r.RemoteAddr, HTTPS: h.HTTPS || r.TLS != nil, Trusted: h.TrustedProxies}
	if s, ok := h1.LocalAddrString(r.Context()); ok {
		info.LocalAddr = s
	} else if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		info.LocalAddr = la.String()
	}
	return info
}

// forward sends one request, its vars and body ready, to a worker and copies the worker's
// answer to w; the HTTP and the uwsgi front ends share it. It returns errAborted when the
// response broke after its status line went out: the caller must then cut the client
// connection. Any other failure has been answered already.
func (h *Handler) forward(w http.ResponseWriter, r *http.Request, vars []protocol.Var, body *body, rec *Record) error {
	bufp := packetPool.Get().(*[]byte)
	defer packetPool.Put(bufp)
	// The NUL-joined form is what the worker decodes fastest (in C: a split, not a Python
	// loop); a request with a NUL in a var (a %00 in its path) takes the classic form.
	// The limit is the classic form's, whichever form goes: a request fits a worker or not
	// whatever its bytes are.
	_, err := protocol.VarsSize(vars)
	var packet []byte
	ok := true
	if err == nil {
		packet, ok, err = protocol.AppendPacketNUL((*bufp)[:0], vars)
	}
	if err == nil && !ok {
		packet, err = protocol.AppendPacket((*bufp)[:0], protocol.ModifierKeepAlive, vars)
	}
	if err != nil {
		rec.Status = h.fail(w, r, fmt.Errorf("%w: %w", errHeadersTooLarge, err))
		return err
	}
	*bufp = packet

	rec.BytesIn = body.size
	lease, err := h.dispatch(r.Context(), packet, body, rec, clientGone(w))
	if err != nil {
		rec.Status = h.fail(w, r, err)
		return err
	}
	if lease.Stream() != nil {
		return h.forwardStream(w, r, packet, body, rec, lease)
	}
	return h.answer(w, r, rec, lease)
}

// answer copies the answer of a worker that got the request on a uwsgi slot to w, and
// gives the slot back; its error is forward's.
func (h *Handler) answer(w http.ResponseWriter, r *http.Request, rec *Record, lease Lease) error {
	rec.Worker = lease.WorkerID()
	released := &onceLease{Lease: lease}
	reusable := false
	defer func() { released.Release(reusable) }()

	var head h1.ResponseHead
	if err := h1.ReadResponseHead(lease.Reader(), r.Method, &head); err != nil {
		rec.Status = h.fail(w, r, fmt.Errorf("%w: %w", errWorkerFailed, err))
		return err
	}
	rec.Status = head.StatusCode
	var err error
	reusable, rec.BytesOut, err = h.copyResponse(w, &head, lease.Reader(), released)
	if errors.Is(err, errBodyBeforeHead) {
		// Nothing went to the client yet: it gets a clean 502 rather than a cut.
		rec.Status = h.fail(w, r, fmt.Errorf("%w: %w", errWorkerFailed, err))
		return err
	}
	if err != nil {
		h.Log.Warn().Err(err).Int("worker", rec.Worker).Str("path", r.URL.Path).Msg("response aborted")
		return fmt.Errorf("%w: %w", errAborted, err)
	}
	return nil
}

// dispatch sends the request to a worker, trying another when the chosen one could not
// take it at all (its connection was refused or broke before the request was written).
func (h *Handler) dispatch(ctx context.Context, packet []byte, b *body, rec *Record, gone func() bool) (Lease, error) {
	var lastErr error
	for range maxAttempts {
		queued := time.Now()
		lease, err := h.Backend.Acquire(ctx)
		waited := time.Since(queued)
		rec.QueueWait += waited
		if err == nil && waited > clientCheckAfter && gone != nil && gone() {
			// The client left while the request waited: no worker serves nobody.
			lease.Release(true)
			return nil, context.Canceled
		}
		if err != nil {
			var opErr *net.OpError
			if errors.As(err, &opErr) { // a dead worker's socket: try another one
				lastErr = err
				continue
			}
			return nil, err
		}
		// Set now, not on success only: a request that times out or breaks on this
		// worker is logged with it.
		rec.Worker = lease.WorkerID()
		lease.Describe(rec.Request.Method, rec.Request.RequestURI, rec.Start)
		if lease.Stream() != nil {
			return lease, nil // a framed worker's exchange sends the request itself (stream.go)
		}
		err = sendRequest(lease, packet, b)
		if err == nil {
			// Wait for the first byte of the answer (a queued request goes out first). On
			// Linux, a Unix socket closed with unread data makes its peer's read fail with
			// ECONNRESET, while one closed after reading gives EOF: so ECONNRESET here proves
			// the worker died without reading the request, and it is safe to send it
			// elsewhere, as after EPIPE on the write.
			_, err = lease.Reader().Peek(1)
			if err == nil {
				return lease, nil
			}
		}
		lease.Release(false)
		lastErr = err
		if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
			break
		}
	}
	return nil, fmt.Errorf("%w: %w", errWorkerFailed, lastErr)
}

// clientCheckAfter is how long a request must have waited for a worker before the master
// looks whether its client is still there (one peek at the socket).
const clientCheckAfter = 50 * time.Millisecond

// clientGone returns the check of w's client, when w's server can tell (herd's HTTP/1
// server can; net/http's HTTP/2 cancels the request's context instead).
func clientGone(w http.ResponseWriter) func() bool {
	if g, ok := w.(interface{ ClientGone() bool }); ok {
		return g.ClientGone
	}
	return nil
}

// sendRequest sends the request and its body on the lease, a file body from its start (a
// retry sends it again).
func sendRequest(lease Lease, packet []byte, b *body) error {
	if b.file == nil {
		return lease.Send(packet, b.mem, nil)
	}
	if _, err := b.file.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("rewind request body: %w", err)
	}
	return lease.Send(packet, nil, b.file)
}
