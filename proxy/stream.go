package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/herd-server/herd/protocol"
)

// Stream is a request's stream on a multiplexed worker's framed link (docs/protocol.md, "The
// framed link"): what a Lease offers instead of Send and Reader when its worker speaks
// frames (the asyncio ASGI worker). Every capability the stream exchanges use is here.
type Stream interface {
	// Send queues a frame of this stream for the worker. A data frame (body, WebSocket
	// message) waits for the worker's credit, split to fit it, until ctx ends or the
	// stream does.
	Send(ctx context.Context, t protocol.FrameType, flags uint8, payload []byte) error
	// Receive returns the worker's next frame on this stream, waiting up to patience for
	// it: ok=false when none came in that time. It fails when ctx ends, past --timeout
	// (os.ErrDeadlineExceeded), or when the link broke before the worker ended the
	// stream. Data frames are credited back to the worker at the next call, so a client
	// that does not take them holds back that stream alone.
	Receive(ctx context.Context, patience time.Duration) (f protocol.Frame, ok bool, err error)
	// Started reports whether the worker has the request: a stream whose link broke
	// before it was never begun, and may go to another worker.
	Started() bool
	// NoDeadline lifts --timeout from the stream (a WebSocket lives as long as its client
	// and app want); before the stream is used by another goroutine.
	NoDeadline()
}

// clientCheckEvery is how often a stream exchange waiting for its worker looks whether its
// client is still there: an app listening for http.disconnect hears of it within this.
const clientCheckEvery = 500 * time.Millisecond

// forwardStream is forward for a lease on a framed worker: the request goes as a REQUEST
// frame (packet is its uwsgi head) and body frames, the answer comes back as frames. A
// link that broke before the worker said STARTED sends the request to another worker.
func (h *Handler) forwardStream(w http.ResponseWriter, r *http.Request, packet []byte, b *body, rec *Record, lease Lease) error {
	for attempt := 1; ; attempt++ {
		ex := streamExchange{h: h, w: w, r: r, rec: rec, lease: lease, st: lease.Stream(), gone: clientGone(w)}
		err := ex.run(packet, b)
		if err == nil || ex.headSent || ex.st.Started() || attempt >= maxAttempts || !errors.Is(err, errLinkFailed) {
			lease.Release(err == nil)
			return ex.finish(err)
		}
		lease.Release(false)
		if lease, err = h.dispatch(r.Context(), packet, b, rec, clientGone(w)); err != nil {
			rec.Status = h.fail(w, r, err)
			return err
		}
		if lease.Stream() == nil {
			return h.answer(w, r, rec, lease)
		}
	}
}

// errLinkFailed marks a failure of the stream's link (the worker died).
var errLinkFailed = errors.New("worker link failed")

// streamExchange is one request's exchange on one stream.
type streamExchange struct {
	h         *Handler
	w         http.ResponseWriter
	r         *http.Request
	rec       *Record
	lease     Lease
	st        Stream
	gone      func() bool
	status    int  // from RESPONSE_START, 0 before it
	headSent  bool // the status line went to the client
	unflushed bool
}

func (ex *streamExchange) run(packet []byte, b *body) error {
	ctx := ex.r.Context()
	bodyDone, err := ex.sendRequest(ctx, packet, b)
	if err != nil {
		return err
	}
	if bodyDone != nil {
		// The rest of the body goes out as the worker takes it; it ends with the stream.
		defer func() { <-bodyDone }()
	}
	for {
		patience := clientCheckEvery
		if ex.unflushed {
			patience = 0
		}
		f, ok, err := ex.st.Receive(ctx, patience)
		if err != nil {
			return ex.linkError(err)
		}
		if !ok {
			if ex.unflushed {
				ex.flush()
			} else if ex.gone != nil && ex.gone() {
				return context.Canceled
			}
			continue
		}
		done, err := ex.take(f)
		if done || err != nil {
			return err
		}
	}
}

func (ex *streamExchange) linkError(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: %w", errLinkFailed, err)
}

// sendRequest sends the REQUEST frame and the body: at once when it fits the worker's
// first credit, else by a goroutine of its own that ends with the stream (the channel is
// closed then).
func (ex *streamExchange) sendRequest(ctx context.Context, packet []byte, b *body) (chan struct{}, error) {
	if b.size == 0 {
		return nil, ex.st.Send(ctx, protocol.FrameRequest, protocol.FlagEnd, packet)
	}
	if err := ex.st.Send(ctx, protocol.FrameRequest, 0, packet); err != nil {
		return nil, err
	}
	if b.file == nil && b.size <= protocol.InitialWindow {
		return nil, ex.st.Send(ctx, protocol.FrameBody, protocol.FlagEnd, b.mem)
	}
	var src io.Reader
	if b.file != nil {
		if _, err := b.file.Seek(0, io.SeekStart); err != nil {
			return nil, fmt.Errorf("rewind request body: %w", err)
		}
		src = b.file
	} else {
		src = bytes.NewReader(b.mem)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sendBody(ctx, ex.st, src, b.size)
	}()
	return done, nil
}

// sendBody sends size bytes of src as body frames; it stops when the stream fails.
func sendBody(ctx context.Context, st Stream, src io.Reader, size int64) {
	bufp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bufp)
	for sent := int64(0); sent < size; {
		n, err := io.ReadFull(src, (*bufp)[:min(int64(len(*bufp)), size-sent)])
		if err != nil {
			return // the worker sees a body cut short when the stream ends
		}
		sent += int64(n)
		flags := uint8(0)
		if sent == size {
			flags = protocol.FlagEnd
		}
		if st.Send(ctx, protocol.FrameBody, flags, (*bufp)[:n]) != nil {
			return
		}
	}
}

// take handles one frame of the worker's answer; done when it was the last.
func (ex *streamExchange) take(f protocol.Frame) (done bool, err error) {
	switch f.Type {
	case protocol.FrameResponseStart:
		if ex.status != 0 {
			return false, fmt.Errorf("%w: a second RESPONSE_START", errWorkerFailed)
		}
		if err := ex.start(f.Payload); err != nil {
			return false, err
		}
		if f.Flags&protocol.FlagEnd != 0 {
			ex.commit()
			return true, nil
		}
	case protocol.FrameResponseBody:
		if ex.status == 0 {
			return false, fmt.Errorf("%w: body before RESPONSE_START", errWorkerFailed)
		}
		ex.commit()
		if len(f.Payload) > 0 {
			n, werr := ex.w.Write(f.Payload)
			ex.rec.BytesOut += int64(n)
			if werr != nil {
				return false, context.Canceled // the client left: the worker hears DISCONNECT
			}
			ex.unflushed = true
		}
		return f.Flags&protocol.FlagEnd != 0, nil
	case protocol.FrameSendFile:
		return true, ex.sendFile(string(f.Payload))
	case protocol.FrameEarlyHints:
		ex.earlyHints(f.Payload)
	case protocol.FrameEnd:
		if f.Payload[0] == 0 && ex.headSent {
			return false, fmt.Errorf("%w: the stream ended before its response did", errWorkerFailed)
		}
		return false, fmt.Errorf("%w: the app failed (its log says why)", errWorkerFailed)
	default:
		return false, fmt.Errorf("%w: %s on an HTTP stream", errWorkerFailed, f.Type)
	}
	return false, nil
}

// start takes RESPONSE_START: the status and the headers, which go out with the first body.
func (ex *streamExchange) start(p []byte) error {
	dst := ex.w.Header()
	status, err := protocol.DecodeResponseStart(p, func(k, v []byte) {
		name := http.CanonicalHeaderKey(string(k))
		if !hopByHop[name] && name != noBufferingHeader {
			dst[name] = append(dst[name], string(v))
		}
	})
	if err != nil {
		return fmt.Errorf("%w: %w", errWorkerFailed, err)
	}
	for k, vv := range ex.h.AddHeaders {
		if _, set := dst[k]; !set {
			dst[k] = vv
		}
	}
	ex.status = status
	ex.rec.Status = status
	return nil
}

func (ex *streamExchange) commit() {
	if !ex.headSent {
		ex.headSent = true
		ex.w.WriteHeader(ex.status)
	}
}

func (ex *streamExchange) flush() {
	ex.unflushed = false
	if f, ok := ex.w.(http.Flusher); ok {
		f.Flush()
	}
}

// sendFile ends the response with a file's content (http.response.pathsend), by sendfile
// where the connection allows.
func (ex *streamExchange) sendFile(path string) error {
	if ex.status == 0 {
		return fmt.Errorf("%w: SENDFILE before RESPONSE_START", errWorkerFailed)
	}
	if !filepath.IsAbs(path) {
		return fmt.Errorf("%w: pathsend path %q is not absolute", errWorkerFailed, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%w: pathsend: %w", errWorkerFailed, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: pathsend: %s is not a regular file", errWorkerFailed, path)
	}
	if ex.w.Header().Get("Content-Length") == "" {
		ex.w.Header().Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
	}
	ex.commit()
	n, err := io.Copy(ex.w, f)
	ex.rec.BytesOut += n
	if err != nil && n < fi.Size() {
		return context.Canceled
	}
	return nil
}

// earlyHints sends a 103 with the hints' headers, which are not kept for the final answer.
func (ex *streamExchange) earlyHints(p []byte) {
	if ex.status != 0 {
		return
	}
	h := ex.w.Header()
	var names []string
	_ = protocol.DecodeHeaders(p, func(k, v []byte) {
		name := http.CanonicalHeaderKey(string(k))
		h[name] = append(h[name], string(v))
		names = append(names, name)
	})
	ex.w.WriteHeader(http.StatusEarlyHints)
	for _, n := range names {
		delete(h, n)
	}
}

// finish maps the exchange's failure to what the client gets, as forward does: a status
// when nothing went out yet, else errAborted (the caller cuts the connection).
func (ex *streamExchange) finish(err error) error {
	switch {
	case err == nil:
		if !ex.headSent {
			ex.commit()
		}
		return nil
	case errors.Is(err, context.Canceled):
		ex.rec.Status = statusClientClosed
		return nil
	case !ex.headSent:
		if errors.Is(err, errLinkFailed) {
			err = fmt.Errorf("%w: %w", errWorkerFailed, err)
		}
		clear(ex.w.Header())
		ex.rec.Status = ex.h.fail(ex.w, ex.r, err)
		return err
	}
	ex.h.Log.Warn().Err(err).Int("worker", ex.rec.Worker).Str("path", ex.r.URL.Path).Msg("response aborted")
	return fmt.Errorf("%w: %w", errAborted, err)
}
