package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"

	"github.com/herd-server/herd/proxy/h1"
)

// sendSpooled sends a response too large to hold in memory through a temporary file, as
// nginx's proxy temp files do: the handler writes the worker's bytes into it as fast as
// the worker sends them, while a goroutine of its own sends them from it (sf.out) as fast
// as the client reads, by sendfile where the connection allows. So the client gets the
// answer from its first bytes on, and the worker is given back once its whole body is in
// the file, however slowly the client reads. A client that leaves, or takes nothing for
// --send-timeout, stops the copy; the worker connection is then not reused (the worker's
// next write fails and it stops producing). A spool that cannot be written (the disk is
// full) ends as an unspooled answer does: see unspool.
func (h *Handler) sendSpooled(w http.ResponseWriter, head *h1.ResponseHead, src io.Reader, br *bufio.Reader, lease Lease, sf *spoolFile) (bool, int64, error) {
	sp := &spool{}
	sp.cond.L = &sp.mu
	w.WriteHeader(head.StatusCode)
	sent := make(chan int64, 1)
	go func() { sent <- sp.send(w, sf.out) }() // waited for below, on every return

	bufp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bufp)
	buf := *bufp
	var copied int64
	var err error
	for copied < head.ContentLength && !sp.clientGone() {
		nr, rerr := src.Read(buf[:min(int64(len(buf)), head.ContentLength-copied)])
		if nr > 0 {
			nw, werr := sf.Write(buf[:nr])
			copied += int64(nw)
			sp.advance(copied)
			if werr != nil {
				return h.unspool(w, head, src, br, sp, sent, buf, nw, nr, werr)
			}
		}
		if rerr == io.EOF && copied < head.ContentLength {
			rerr = io.ErrUnexpectedEOF
		}
		if rerr != nil && rerr != io.EOF {
			err = fmt.Errorf("read worker response: %w", rerr)
			break
		}
	}
	if err != nil || copied < head.ContentLength { // a failure, or the client left
		sp.end(true)
		return false, <-sent, err
	}
	reusable := !head.Close && br.Buffered() == 0
	lease.Release(reusable)
	sp.end(false)
	return reusable, <-sent, nil
}

// unspool ends an answer whose spool could not be written (cause: the disk is full, say)
// without a truncated body: what is in the file goes to the client, then buf[from:to] (read
// from the worker, not written), then the rest of the body straight from the worker as the
// client takes it, as an answer over --response-spool goes. Its worker is held meanwhile,
// up to --send-timeout per write.
func (h *Handler) unspool(w http.ResponseWriter, head *h1.ResponseHead, src io.Reader, br *bufio.Reader, sp *spool, sent <-chan int64, buf []byte, from, to int, cause error) (bool, int64, error) {
	sp.end(false)
	n := <-sent
	if sp.clientGone() {
		return false, n, nil
	}
	h.warnShort(&h.unspooled, tempFileError("spool the response", cause),
		"a response spool could not be written: the rest of the answer goes straight from the worker as the client reads")
	if from < to {
		nw, werr := w.Write(buf[from:to])
		n += int64(nw)
		if werr != nil {
			return false, n, nil
		}
	}
	reusable, m, err := passThrough(w, src, buf, nil, head, br)
	return reusable, n + m, err
}

// spool is what the handler and the sender of a spooled response tell each other.
type spool struct {
	mu      sync.Mutex
	cond    sync.Cond
	written int64 // bytes of the body in the file so far
	ended   bool  // no more will be written
	failed  bool  // and the client must not get what is there: the body is cut
	gone    bool  // the client stopped reading (its connection failed)
}

func (sp *spool) advance(written int64) {
	sp.mu.Lock()
	sp.written = written
	sp.mu.Unlock()
	sp.cond.Signal()
}

func (sp *spool) end(failed bool) {
	sp.mu.Lock()
	sp.ended, sp.failed = true, failed
	sp.mu.Unlock()
	sp.cond.Signal()
}

func (sp *spool) clientGone() bool {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.gone
}

// send copies the body from out to the client as it is written, and returns how many bytes
// the client got.
func (sp *spool) send(w io.Writer, out *os.File) int64 {
	var sent int64
	for {
		sp.mu.Lock()
		for sp.written == sent && !sp.ended {
			sp.cond.Wait()
		}
		written, ended, failed := sp.written, sp.ended, sp.failed
		sp.mu.Unlock()
		if failed || written == sent && ended {
			return sent
		}
		// One LimitedReader around the file: the connection's ReadFrom sends it by sendfile.
		want := written - sent
		n, err := io.Copy(w, &io.LimitedReader{R: out, N: want})
		sent += n
		if err != nil || n < want {
			sp.mu.Lock()
			sp.gone = true
			sp.mu.Unlock()
			return sent
		}
	}
}
