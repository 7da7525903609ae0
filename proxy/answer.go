package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/herd-server/herd/proxy/h1"
)

// The worker's answer, from its head to its last byte, on its way to the client: taken off
// the worker whole when it can be (in memory, or through a spool file) so that a slow client
// holds no worker, passed through as it comes when it streams.

// hopByHop headers describe one connection; the master owns the client's, so a worker's
// values for them are not forwarded.
var hopByHop = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Transfer-Encoding": true,
	"Te": true, "Trailer": true, "Upgrade": true,
}

// noBufferingHeader is how an app asks for its response to go to the client part by part
// as it yields them, even with a Content-Length: nginx's header, so apps that set it for
// nginx stream under herd too. It is not passed on to the client.
const noBufferingHeader = "X-Accel-Buffering"

// copyResponse sends the worker's response, its head read already, to the client. It
// reports whether the worker connection can carry another request (the body was read to
// its end and nothing more came) and how many body bytes the client got. An error means
// the worker's side broke mid-body.
//
// A response with a Content-Length up to ResponseBuffer is read whole first and the lease
// released before the client write starts, so a slow client holds no worker. A streaming
// response (no length, text/event-stream, or X-Accel-Buffering: no) goes out part by part,
// flushed as it comes.
func (h *Handler) copyResponse(w http.ResponseWriter, head *h1.ResponseHead, br *bufio.Reader, lease Lease) (reusable bool, n int64, err error) {
	streaming := head.ContentLength < 0 ||
		strings.HasPrefix(head.Header.Get("Content-Type"), "text/event-stream") ||
		strings.EqualFold(head.Header.Get(noBufferingHeader), "no")
	dst := w.Header()
	for k, vv := range head.Header {
		if !hopByHop[k] && k != noBufferingHeader {
			dst[k] = vv
		}
	}
	for k, vv := range h.AddHeaders {
		if _, set := head.Header[k]; !set {
			dst[k] = vv
		}
	}
	body := head.Body(br)
	if !streaming && head.ContentLength <= h.ResponseBuffer {
		// A body past the 64 KiB copy buffer takes a buffer of --body-memory while it is
		// held: without room it goes through a spool file below, as a larger one does.
		if head.NoBody || head.ContentLength <= copyBufSize {
			return h.sendBuffered(w, head, body, br, lease, nil)
		}
		if mem, ok := h.memory.get(int(head.ContentLength), h.BodyMemory); ok {
			defer h.memory.put(mem, h.BodyMemory)
			return h.sendBuffered(w, head, body, br, lease, mem)
		}
	}
	if !streaming && !head.NoBody && head.ContentLength <= h.ResponseSpool {
		sf, err := h.openSpool(head.ContentLength)
		if err == nil {
			defer sf.close()
			return h.sendSpooled(w, head, body, br, lease, sf)
		}
		h.warnShort(&h.unspooled, err, "cannot spool a large response: it goes through as the client reads, holding its worker up to --send-timeout")
	}
	w.WriteHeader(head.StatusCode)
	var flush func()
	if flusher, ok := w.(http.Flusher); ok && streaming {
		flush = flusher.Flush
		flush() // the headers too: an event stream may be quiet for a while
	}
	bufp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bufp)
	return passThrough(w, body, *bufp, flush, head, br)
}

// passThrough copies the rest of the worker's body src to the client as the client takes
// it, through buf, calling flush (when not nil) after each part. It reports whether the
// worker connection can carry another request (the body was read to its end and nothing
// more came) and how many bytes the client got; an error means the worker's side broke.
func passThrough(w io.Writer, src io.Reader, buf []byte, flush func(), head *h1.ResponseHead, br *bufio.Reader) (reusable bool, n int64, err error) {
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := w.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				// The client left, or took nothing for --send-timeout. Closing the worker
				// connection (reusable=false) makes the worker's next write fail, so it
				// stops producing for nobody.
				return false, n, nil
			}
			if flush != nil {
				flush()
			}
		}
		if rerr == io.EOF {
			return !head.Close && br.Buffered() == 0, n, nil
		}
		if rerr != nil {
			return false, n, fmt.Errorf("read worker response: %w", rerr)
		}
	}
}

// sendBuffered reads the whole body from the worker into mem (nil: into a copy buffer, for
// a body of at most its 64 KiB), gives the worker back, then writes to the client. The
// lease is released here; the caller's Release is then a no-op. mem is free again once
// this returns: every ResponseWriter here has sent or copied the bytes by then (herd's h1
// writes a large body at once, not held back).
func (h *Handler) sendBuffered(w http.ResponseWriter, head *h1.ResponseHead, src io.Reader, br *bufio.Reader, lease Lease, mem []byte) (bool, int64, error) {
	body := mem
	switch {
	case head.NoBody: // HEAD, 204, 304: a Content-Length but no body
		body = nil
	case mem == nil:
		bufp := copyBufPool.Get().(*[]byte)
		defer copyBufPool.Put(bufp)
		body = (*bufp)[:head.ContentLength]
	}
	if _, err := io.ReadFull(src, body); err != nil {
		return false, 0, fmt.Errorf("%w: %w", errBodyBeforeHead, err)
	}
	// Bytes already waiting after the body mean the worker wrote more than its
	// Content-Length: they would be taken for the next answer, so the connection goes.
	reusable := !head.Close && br.Buffered() == 0
	lease.Release(reusable)
	w.WriteHeader(head.StatusCode)
	nw, _ := w.Write(body) // a client that left is no error of the worker's
	return reusable, int64(nw), nil
}

// writerOnly hides ReadFrom, so that a copy into it reads into the buffer it is given.
type writerOnly struct{ io.Writer }

// onceLease lets sendBuffered give the worker back early and the handler's deferred
// Release still run.
type onceLease struct {
	Lease
	done bool
}

func (l *onceLease) Release(reusable bool) {
	if !l.done {
		l.done = true
		l.Lease.Release(reusable)
	}
}
