package h1

import (
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// holdLimit is how much of a body without a declared length is held before its head goes
// out: a handler that writes less and returns gets a Content-Length; more goes out chunked.
const holdLimit = 64 << 10

// joinLimit: a body write up to this size is copied behind the head, so both leave in one
// system call; a larger one goes out by itself after it (writev), not copied.
const joinLimit = 16 << 10

// response is the http.ResponseWriter of one request. The head is built when the response
// commits: at the first write past what can be held, at a Flush, or when the handler returns.
type response struct {
	c      *conn
	header http.Header
	status int

	wroteHeader bool
	committed   bool  // the head is in out (or sent)
	declared    int64 // the handler's Content-Length, -1 when it set none
	written     int64 // body bytes the handler wrote
	chunked     bool
	noBody      bool // HEAD, 1xx, 204, 304: what the handler writes is dropped
	closeAfter  bool // the connection ends with this response
	isHead      bool

	out  []byte    // committed bytes not sent yet
	big  [][]byte  // large writes to send after out, not copied (see joinLimit)
	one  [1][]byte // pending's answer when big is empty
	hold []byte    // body bytes written before the commit
	err  error     // a write to the client failed: the rest is dropped

	// outBuf and holdBuf are the connection's buffers, kept from one response to the next
	// while they stay small: an idle connection should not pin a large one.
	outBuf, holdBuf []byte
}

// keptBuffer is the largest out or hold buffer a connection keeps between responses.
const keptBuffer = 16 << 10

func (w *response) reset(c *conn, isHead bool) {
	outBuf, holdBuf := w.outBuf, w.holdBuf
	if cap(w.out) > cap(outBuf) && cap(w.out) <= keptBuffer {
		outBuf = w.out
	}
	if cap(w.hold) > cap(holdBuf) && cap(w.hold) <= keptBuffer {
		holdBuf = w.hold
	}
	if outBuf == nil {
		outBuf = make([]byte, 0, 2048)
	}
	clear(w.big)
	*w = response{c: c, header: w.header, declared: -1, isHead: isHead,
		out: outBuf[:0], hold: holdBuf[:0], big: w.big[:0], outBuf: outBuf, holdBuf: holdBuf}
	clear(w.header)
}

func (w *response) Header() http.Header { return w.header }

func (w *response) WriteHeader(code int) {
	if w.wroteHeader || code < 100 || code > 999 {
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		w.writeInformational(code)
		return
	}
	w.wroteHeader = true
	w.status = code
	w.noBody = w.isHead || code == http.StatusNoContent || code == http.StatusNotModified || code < 200
	if cl := w.header.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			w.declared = n
		} else {
			w.header.Del("Content-Length") // not a length: net/http drops it too
		}
	}
}

// writeInformational sends a 1xx head at once (103 Early Hints and the like).
func (w *response) writeInformational(code int) {
	if w.c.minor == 0 {
		return // HTTP/1.0 knows no 1xx
	}
	b := appendStatusLine(w.out, code)
	b = appendHeader(b, w.header)
	w.out = append(b, "\r\n"...)
	w.flushOut()
}

func (w *response) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.noBody {
		if w.isHead {
			w.written += int64(len(p))
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	tooLong := false
	if w.declared >= 0 && w.written+int64(len(p)) > w.declared {
		p, tooLong = p[:w.declared-w.written], true
	}
	n := len(p)
	w.written += int64(n)
	if !w.committed {
		if w.declared < 0 && len(w.hold)+n <= holdLimit {
			w.hold = append(w.hold, p...)
			return n, nil
		}
		w.commit()
	}
	w.appendBody(p)
	if len(w.out) > holdLimit || len(w.big) > 0 {
		w.flushOut()
	}
	if w.err != nil {
		return n, w.err
	}
	if tooLong {
		return n, http.ErrContentLength
	}
	return n, nil
}

func (w *response) WriteString(s string) (int, error) {
	return w.Write([]byte(s))
}

// appendBody frames p after the committed head.
func (w *response) appendBody(p []byte) {
	if len(p) == 0 {
		return
	}
	if w.chunked {
		w.out = strconv.AppendInt(w.out, int64(len(p)), 16)
		w.out = append(w.out, "\r\n"...)
	}
	if len(p) > joinLimit {
		w.big = append(w.big, w.out, p)
		w.out = w.out[len(w.out):] // what follows goes after the bytes big holds
		if w.chunked {
			w.out = append(w.out, "\r\n"...)
		}
		return
	}
	w.out = append(w.out, p...)
	if w.chunked {
		w.out = append(w.out, "\r\n"...)
	}
}

// Flush sends the head and what was written so far: a streaming handler's parts go out as
// they come.
func (w *response) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit()
	}
	w.flushOut()
}

// ReadFrom lets a file body leave by sendfile (static files): the head goes out, then the
// connection's own ReadFrom copies the file in the kernel.
func (w *response) ReadFrom(src io.Reader) (int64, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	rf, ok := w.c.nc.(io.ReaderFrom)
	if !ok || w.noBody || w.declared < 0 || w.err != nil || w.c.tls != nil {
		return io.Copy(writerOnly{w}, src)
	}
	if !w.committed {
		w.commit()
	}
	w.flushOut()
	if w.err != nil {
		return 0, w.err
	}
	// One LimitedReader around the file, not two: net's sendfile looks through one only.
	limit := w.declared - w.written
	outer, _ := src.(*io.LimitedReader)
	if outer != nil {
		src, limit = outer.R, min(limit, outer.N)
	}
	var n int64
	var err error
	if sc, ok := src.(syscall.Conn); ok && w.c.raw != nil {
		// sendfile on the raw connection, as the rest of the exchange: no entersyscall,
		// so no sysmon woken (see internal/rawio).
		var rc syscall.RawConn
		if rc, err = sc.SyscallConn(); err == nil {
			n, err = w.c.raw.SendFile(rc, limit)
		}
	} else {
		n, err = rf.ReadFrom(&io.LimitedReader{R: src, N: limit})
	}
	if outer != nil {
		outer.N -= n
	}
	w.written += n
	if err != nil {
		w.err, w.closeAfter = err, true
	}
	return n, err
}

// writerOnly hides ReadFrom, so that io.Copy cannot loop back into it.
type writerOnly struct{ io.Writer }

// commit builds the head into out, choosing the body's framing.
func (w *response) commit() {
	w.committed = true
	c := w.c
	if c.body.tooLongToDiscard() {
		// A head going out means the handler is done with the request body (herd's read
		// theirs whole before answering, or refuse it unread: a 413). A rest longer than
		// what is discarded after the answer, or of unknown length, means the connection
		// closes: the head says so, or a client could send its next request on it (net/http
		// does the same past its 256 KiB). Nothing is read here: a client that stopped
		// sending still gets its answer at once.
		w.closeAfter = true
	}
	if w.declared < 0 && !w.noBody {
		switch {
		case c.handlerDone:
			w.declared = int64(len(w.hold)) // the whole body is known
			w.header.Set("Content-Length", strconv.Itoa(len(w.hold)))
		case c.minor == 1:
			w.chunked = true
		default:
			w.closeAfter = true // HTTP/1.0: the close ends the body
		}
	} else if w.isHead && w.declared < 0 && w.status < 300 && c.handlerDone && w.written > 0 {
		w.header.Set("Content-Length", strconv.FormatInt(w.written, 10))
	}
	if hasToken(w.header["Connection"], "close") {
		w.closeAfter = true
	}
	if c.closeAfterReply() {
		w.closeAfter = true
	}
	b := appendStatusLine(w.out, w.status)
	if _, ok := w.header["Date"]; !ok {
		b = append(b, "Date: "...)
		b = appendDate(b)
		b = append(b, "\r\n"...)
	}
	w.header.Del("Transfer-Encoding") // the framing is the server's choice
	b = appendHeader(b, w.header)
	if w.chunked {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	if w.closeAfter && c.minor == 1 && !hasToken(w.header["Connection"], "close") {
		b = append(b, "Connection: close\r\n"...)
	} else if !w.closeAfter && c.minor == 0 {
		b = append(b, "Connection: keep-alive\r\n"...)
	}
	b = append(b, "\r\n"...)
	w.out = b
	held := w.hold
	w.hold = w.hold[:0]
	if !w.noBody {
		w.appendBody(held)
	}
}

// finish completes the response after the handler returned. The bytes are left for the
// connection to send: with the next read when it keeps going, at once otherwise.
func (w *response) finish() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit()
	}
	if w.chunked {
		w.out = append(w.out, "0\r\n\r\n"...)
	}
	if w.declared >= 0 && w.written < w.declared && !w.noBody {
		w.closeAfter = true // the body is short: the client must see the connection end
	}
}

// flushOut sends out and big now.
func (w *response) flushOut() {
	if w.err != nil {
		w.out, w.big = w.out[:0], w.big[:0]
		return
	}
	if len(w.big) > 0 {
		w.big = append(w.big, w.out)
		w.err = w.c.send(w.big...)
		clear(w.big)
		w.big = w.big[:0]
	} else if len(w.out) > 0 {
		w.err = w.c.send(w.out)
	}
	w.out = w.out[:0]
	if w.err != nil {
		w.closeAfter = true
	}
}

// pending returns what finish left to send.
func (w *response) pending() [][]byte {
	if w.err != nil {
		return nil
	}
	if len(w.big) > 0 {
		return append(w.big, w.out)
	}
	if len(w.out) == 0 {
		return nil
	}
	w.one[0] = w.out
	return w.one[:]
}

func appendStatusLine(b []byte, code int) []byte {
	if code == http.StatusOK {
		return append(b, "HTTP/1.1 200 OK\r\n"...)
	}
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	if text := http.StatusText(code); text != "" {
		b = append(b, text...)
	} else {
		b = append(b, "status code "...)
		b = strconv.AppendInt(b, int64(code), 10)
	}
	return append(b, "\r\n"...)
}

// appendHeader writes the fields in the order of their names (as net/http does), without
// allocating for a usual count of fields. A value's CR or LF becomes a space: a handler
// must not be able to add a field by a value.
func appendHeader(b []byte, h http.Header) []byte {
	var stack [24]string
	keys := stack[:0]
	for k := range h {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ { // insertion sort: a few keys, no allocation
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	for _, k := range keys {
		if !isToken(k) {
			continue
		}
		for _, v := range h[k] {
			b = append(b, k...)
			b = append(b, ": "...)
			start := len(b)
			b = append(b, trimOWS(v)...)
			for i := start; i < len(b); i++ {
				if b[i] == '\r' || b[i] == '\n' || b[i] == 0 {
					b[i] = ' '
				}
			}
			b = append(b, "\r\n"...)
		}
	}
	return b
}

// The Date field changes once a second: it is formatted once a second, not per response.
type dateLine struct {
	sec int64
	b   []byte
}

var cachedDate atomic.Pointer[dateLine]

func appendDate(b []byte) []byte {
	now := time.Now()
	d := cachedDate.Load()
	if d == nil || d.sec != now.Unix() {
		d = &dateLine{sec: now.Unix(), b: now.UTC().AppendFormat(nil, http.TimeFormat)}
		cachedDate.Store(d)
	}
	return append(b, d.b...)
}
