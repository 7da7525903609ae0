package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"

	"github.com/herd-server/herd/internal/fdbudget"
)

// body is a request body the master has read in full before choosing a worker, so a slow
// upload never holds a worker and a request can be offered to another worker if the first
// one could not take it. Small bodies stay in memory; larger ones spill to a temporary file
// that is unlinked at once, so it is deleted whatever happens to the process.
type body struct {
	mem   []byte
	class int // mem's buffer class (see getBuf); 0 when mem is not pooled
	file  *os.File
	files *fdbudget.Files // what file's descriptor is counted in
	size  int64

	budget   *budget // what reserved is given back to
	reserved int64
	disk     *fileWriter // file's count of --temp-space, given back with it
}

// Close releases the body: nothing may use it after.
func (b *body) Close() {
	if b.file != nil {
		_ = b.file.Close()
		b.file = nil
		b.files.Give(1)
		b.disk.release()
	}
	if b.class > 0 {
		putBuf(b.mem, b.class)
		b.mem, b.class = nil, 0
	}
	if b.reserved > 0 {
		b.budget.give(b.reserved)
		b.reserved = 0
	}
}

// budget counts bytes held against a bound: of bodies in memory (Handler.BodyMemory), of
// temporary files (Handler.TempSpace).
type budget struct {
	used atomic.Int64
}

// take counts n bytes more within limit, and returns what it counted, to give back later
// (0 when there is no limit); false, counting nothing, when the room is not there.
func (b *budget) take(n, limit int64) (int64, bool) {
	if limit <= 0 || n <= 0 {
		return 0, true
	}
	if b.used.Add(n) > limit {
		b.give(n)
		return 0, false
	}
	return n, true
}

func (b *budget) give(n int64) { b.used.Add(-n) }

// holdMemory reserves n bytes of --body-memory for a body about to be held. It returns what
// it counted, to give back later (0 when there is no bound), and false when the room is not
// there.
func (h *Handler) holdMemory(n int64) (int64, bool) {
	return h.bodyMemory.take(n, h.BodyMemory)
}

var emptyBody = &body{}

func (h *Handler) readBody(r *http.Request) (*body, error) {
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		return emptyBody, nil
	}
	return h.readBodyFrom(r.Body, r.ContentLength)
}

// readBodyFrom reads a body of length bytes from src, or up to EOF when length is -1. A
// body shorter than its length is an error: the client left or lied.
func (h *Handler) readBodyFrom(src io.Reader, length int64) (*body, error) {
	if length == 0 {
		return emptyBody, nil
	}
	if maxSize := h.MaxBodySize; maxSize > 0 {
		if length > maxSize {
			return nil, fmt.Errorf("%w: Content-Length %d > %d", errBodyTooLarge, length, maxSize)
		}
		src = http.MaxBytesReader(nil, io.NopCloser(src), maxSize)
	}
	// Nothing is held for a body before its first byte comes: a client that announces a
	// large body and sends nothing (200 HTTP/2 streams announcing 1 MB each reserved all of
	// --body-memory) holds its connection only, until --body-timeout gives it up.
	first, err := firstByte(src)
	switch {
	case err == io.EOF && length < 0:
		return emptyBody, nil
	case err == io.EOF:
		return nil, fmt.Errorf("%w: 0 of %d bytes", errBadBody, length)
	case err != nil:
		return nil, bodyError(err)
	}
	memLimit := h.BodyBuffer
	// Room in memory is reserved before the rest is read: the body's length, or for one of
	// unknown length (chunked) the most it may hold in memory. Without room, it goes to a
	// file.
	want := min(length, memLimit)
	if length < 0 {
		want = memLimit
	}
	reserve, ok := h.holdMemory(want)
	if !ok {
		memLimit = 0
	}
	b, err := h.readBodyWithin(first, src, length, memLimit)
	switch {
	case err != nil:
		h.bodyMemory.give(reserve)
	case b.file != nil:
		h.bodyMemory.give(reserve) // spilled: nothing of it stays in memory
	default:
		if b.size < reserve { // a chunked body shorter than the most it may hold
			h.bodyMemory.give(reserve - b.size)
			reserve = b.size
		}
		b.budget, b.reserved = &h.bodyMemory, reserve
	}
	return b, err
}

// firstByte reads the first byte of a body: one byte, so that nothing is held for it while
// it is awaited.
func firstByte(src io.Reader) ([]byte, error) {
	first := make([]byte, 1)
	for range 100 {
		n, err := src.Read(first)
		if n > 0 {
			return first, nil
		}
		if err != nil {
			return nil, err
		}
	}
	return nil, io.ErrNoProgress
}

// readBodyWithin reads the body, its first bytes read already (head), holding up to
// memLimit bytes of it in memory.
func (h *Handler) readBodyWithin(head []byte, src io.Reader, length, memLimit int64) (*body, error) {
	if length > 0 && length <= memLimit {
		// The length is known and fits: one pooled buffer of that size. (Through a
		// bytes.Buffer, the read that finds the end needs room past a full buffer, and the
		// buffer doubled: 3 MiB allocated and cleared per 1 MiB upload.)
		mem, class := getBuf(int(length))
		copy(mem, head)
		if n, err := io.ReadFull(src, mem[len(head):]); err != nil {
			putBuf(mem, class)
			if err == io.ErrUnexpectedEOF || err == io.EOF {
				return nil, fmt.Errorf("%w: %d of %d bytes", errBadBody, len(head)+n, length)
			}
			return nil, bodyError(err)
		}
		return &body{mem: mem, class: max(class, 0), size: length}, nil
	}
	var mem bytes.Buffer
	mem.Grow(int(max(min(length, memLimit), int64(len(head)))))
	mem.Write(head)
	_, err := io.CopyN(&mem, src, max(memLimit+1-int64(len(head)), 0))
	var b *body
	switch {
	case err == io.EOF:
		b = &body{mem: mem.Bytes(), size: int64(mem.Len())}
	case err != nil:
		return nil, bodyError(err)
	default:
		if b, err = h.spill(mem.Bytes(), src, length); err != nil {
			return nil, err
		}
	}
	if length > 0 && b.size != length {
		b.Close()
		return nil, fmt.Errorf("%w: %d of %d bytes", errBadBody, b.size, length)
	}
	return b, nil
}

// spill writes a body too large for memory to an unlinked temporary file: head, what was
// read of it already, then the rest (length bytes in all, or -1: up to its end). The file
// is counted in TempFiles and TempSpace: without room in them the request is refused (503)
// rather than the master running out of descriptors for its connections and workers, or
// one upload filling the disk.
func (h *Handler) spill(head []byte, rest io.Reader, length int64) (*body, error) {
	fw, _, err := h.createTemp("body-*", "spill request body", false)
	if err != nil {
		return nil, err
	}
	b := &body{file: fw.f, files: h.TempFiles, disk: fw}
	if length > 0 {
		err = fw.reserve(length) // the whole body at once: refused before it is read
	}
	if err == nil {
		_, err = fw.Write(head)
	}
	if err != nil {
		b.Close()
		return nil, fw.failure()
	}
	// Through a pooled 64 KiB buffer: io.Copy into a file made a 32 KiB buffer per body (os.File's
	// ReadFrom falls back to that for a reader that is not a socket, as the HTTP server's body
	// reader is not). Not larger: many bodies spill at once when --body-memory is full, and
	// 256 of them held 64 MiB of 256 KiB buffers.
	bufp := copyBufPool.Get().(*[]byte)
	n, err := io.CopyBuffer(fw, rest, *bufp)
	copyBufPool.Put(bufp)
	if err != nil {
		b.Close()
		if fw.err != nil { // the server's failure, not the client's
			return nil, fw.failure()
		}
		return nil, bodyError(err)
	}
	b.size = int64(len(head)) + n
	return b, nil
}

func bodyError(err error) error {
	var maxErr *http.MaxBytesError
	if errors.As(err, &maxErr) {
		return fmt.Errorf("%w: %w", errBodyTooLarge, err)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w: %w", errBodyTimeout, err)
	}
	return fmt.Errorf("%w: %w", errBadBody, err)
}
