package proxy

import (
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
	mem    []byte
	memory *memory // what mem is given back to; nil when mem is not the body's own
	limit  int64   // memory's limit when mem was taken
	file   *os.File
	files  *fdbudget.Files // what file's descriptor is counted in
	disk   *fileWriter     // file's count of --temp-space, given back with it
	size   int64
}

// Close releases the body: nothing may use it after.
func (b *body) Close() {
	if b.file != nil {
		_ = b.file.Close()
		b.file = nil
		b.files.Give(1)
		b.disk.release()
	}
	if b.memory != nil {
		b.memory.put(b.mem, b.limit)
		b.mem, b.memory = nil, nil
	}
}

// budget counts bytes held against a bound: those of temporary files (TempSpace).
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

// memBody takes a buffer of n bytes of --body-memory for a body; false without room.
func (h *Handler) memBody(n int64) (*body, bool) {
	mem, ok := h.memory.get(int(n), h.BodyMemory)
	if !ok {
		return nil, false
	}
	return &body{mem: mem, memory: &h.memory, limit: h.BodyMemory, size: n}, true
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
	return h.readBodyWithin(first, src, length)
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

// readBodyWithin reads the body, its first bytes read already (head): in a buffer of
// --body-memory when it is no larger than --body-buffer and there is room, else in a
// temporary file.
func (h *Handler) readBodyWithin(head []byte, src io.Reader, length int64) (*body, error) {
	switch memLimit := h.BodyBuffer; {
	case length < 0 && memLimit > 0:
		return h.readChunked(head, src)
	case length < 0 || length > memLimit:
		return h.spill(src, length, head)
	}
	// The length is known and fits: one buffer of that size. (Through a bytes.Buffer, the
	// read that finds the end needs room past a full buffer, and the buffer doubled: 3 MiB
	// allocated and cleared per 1 MiB upload.)
	b, ok := h.memBody(length)
	if !ok {
		return h.spill(src, length, head)
	}
	copy(b.mem, head)
	if n, err := io.ReadFull(src, b.mem[len(head):]); err != nil {
		b.Close()
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			return nil, fmt.Errorf("%w: %d of %d bytes", errBadBody, len(head)+n, length)
		}
		return nil, bodyError(err)
	}
	return b, nil
}

// readChunked reads a body of unknown length: into a buffer of --body-buffer bytes while
// it fits (then into a smaller one, if its class is smaller and there is room), else into
// a temporary file.
func (h *Handler) readChunked(head []byte, src io.Reader) (*body, error) {
	b, ok := h.memBody(h.BodyBuffer)
	if !ok {
		return h.spill(src, -1, head)
	}
	copy(b.mem, head)
	n, err := io.ReadFull(src, b.mem[len(head):])
	b.size = int64(len(head) + n)
	var more []byte
	if err == nil { // full: one more byte says whether it ends here
		more, err = firstByte(src)
	}
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		b.mem = b.mem[:b.size]
		if small, ok := h.memBody(b.size); ok && cap(small.mem) < cap(b.mem) {
			copy(small.mem, b.mem)
			b.Close()
			return small, nil
		} else if ok {
			small.Close()
		}
		return b, nil
	case err != nil:
		b.Close()
		return nil, bodyError(err)
	}
	spilled, err := h.spill(src, -1, b.mem, more)
	b.Close()
	return spilled, err
}

// spill writes a body too large for memory to an unlinked temporary file: head, what was
// read of it already, then the rest (length bytes in all, or -1: up to its end). The file
// is counted in TempFiles and TempSpace: without room in them the request is refused (503)
// rather than the master running out of descriptors for its connections and workers, or
// one upload filling the disk.
func (h *Handler) spill(rest io.Reader, length int64, head ...[]byte) (*body, error) {
	fw, _, err := h.createTemp("body-*", "spill request body", false)
	if err != nil {
		return nil, err
	}
	b := &body{file: fw.f, files: h.TempFiles, disk: fw}
	if length > 0 {
		err = fw.reserve(length) // the whole body at once: refused before it is read
	}
	headSize := 0
	for _, p := range head {
		if err == nil {
			_, err = fw.Write(p)
			headSize += len(p)
		}
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
	b.size = int64(headSize) + n
	if length > 0 && b.size != length {
		b.Close()
		return nil, fmt.Errorf("%w: %d of %d bytes", errBadBody, b.size, length)
	}
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
