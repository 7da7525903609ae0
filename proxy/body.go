package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
)

// body is a request body the master has read in full before choosing a worker, so a slow
// upload never holds a worker and a request can be offered to another worker if the first
// one could not take it. Small bodies stay in memory; larger ones spill to a temporary file
// that is unlinked at once, so it is deleted whatever happens to the process.
type body struct {
	mem   []byte
	class int // mem's buffer class (see getBuf); 0 when mem is not pooled
	file  *os.File
	size  int64

	budget   *budget // what reserved is given back to
	reserved int64
}

// Close releases the body: nothing may use it after.
func (b *body) Close() {
	if b.file != nil {
		_ = b.file.Close()
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

// budget counts the bytes of bodies held in memory (Handler.BodyMemory).
type budget struct {
	used atomic.Int64
}

func (b *budget) give(n int64) { b.used.Add(-n) }

// holdMemory reserves n bytes of --body-memory for a body about to be held. It returns what
// it counted, to give back later (0 when there is no bound), and false when the room is not
// there.
func (h *Handler) holdMemory(n int64) (int64, bool) {
	if h.BodyMemory <= 0 || n <= 0 {
		return 0, true
	}
	if h.bodyMemory.used.Add(n) > h.BodyMemory {
		h.bodyMemory.give(n)
		return 0, false
	}
	return n, true
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
	memLimit, maxSize, tempDir := h.BodyBuffer, h.MaxBodySize, h.TempDir
	// Room in memory is reserved before the read: the body's length, or for one of unknown
	// length (chunked) the most it may hold in memory. Without room, it goes to a file.
	want := min(length, memLimit)
	if length < 0 {
		want = memLimit
	}
	reserve, ok := h.holdMemory(want)
	if !ok {
		memLimit = 0
	}
	b, err := readBodyWithin(src, length, memLimit, maxSize, tempDir)
	switch {
	case err != nil:
		h.bodyMemory.give(reserve)
	case b.file != nil || b == emptyBody:
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

// readBodyWithin reads the body, holding up to memLimit bytes of it in memory.
func readBodyWithin(src io.Reader, length, memLimit, maxSize int64, tempDir string) (*body, error) {
	if length == 0 {
		return emptyBody, nil
	}
	if maxSize > 0 && length > maxSize {
		return nil, fmt.Errorf("%w: Content-Length %d > %d", errBodyTooLarge, length, maxSize)
	}
	if maxSize > 0 {
		src = http.MaxBytesReader(nil, io.NopCloser(src), maxSize)
	}
	if length > 0 && length <= memLimit {
		// The length is known and fits: one pooled buffer of that size. (Through a
		// bytes.Buffer, the read that finds the end needs room past a full buffer, and the
		// buffer doubled: 3 MiB allocated and cleared per 1 MiB upload.)
		mem, class := getBuf(int(length))
		if n, err := io.ReadFull(src, mem); err != nil {
			putBuf(mem, class)
			if err == io.ErrUnexpectedEOF || err == io.EOF {
				return nil, fmt.Errorf("%w: %d of %d bytes", errBadBody, n, length)
			}
			return nil, bodyError(err)
		}
		return &body{mem: mem, class: max(class, 0), size: length}, nil
	}
	var mem bytes.Buffer
	if length > 0 {
		mem.Grow(int(min(length, memLimit)))
	}
	_, err := io.CopyN(&mem, src, memLimit+1)
	var b *body
	switch {
	case err == io.EOF:
		b = &body{mem: mem.Bytes(), size: int64(mem.Len())}
	case err != nil:
		return nil, bodyError(err)
	default:
		if b, err = spill(mem.Bytes(), src, tempDir); err != nil {
			return nil, err
		}
	}
	if length > 0 && b.size != length {
		b.Close()
		return nil, fmt.Errorf("%w: %d of %d bytes", errBadBody, b.size, length)
	}
	return b, nil
}

func spill(head []byte, rest io.Reader, tempDir string) (*body, error) {
	f, err := os.CreateTemp(tempDir, "body-*")
	if err != nil {
		return nil, fmt.Errorf("spill request body: %w", err)
	}
	_ = os.Remove(f.Name())
	if _, err := f.Write(head); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("spill request body: %w", err)
	}
	// Through a pooled 64 KiB buffer: io.Copy into a file made a 32 KiB buffer per body (os.File's
	// ReadFrom falls back to that for a reader that is not a socket, as the HTTP server's body
	// reader is not). Not larger: many bodies spill at once when --body-memory is full, and
	// 256 of them held 64 MiB of 256 KiB buffers.
	bufp := copyBufPool.Get().(*[]byte)
	n, err := io.CopyBuffer(writerOnly{f}, rest, *bufp)
	copyBufPool.Put(bufp)
	if err != nil {
		_ = f.Close()
		return nil, bodyError(err)
	}
	return &body{file: f, size: int64(len(head)) + n}, nil
}

func bodyError(err error) error {
	var maxErr *http.MaxBytesError
	if errors.As(err, &maxErr) {
		return fmt.Errorf("%w: %w", errBodyTooLarge, err)
	}
	return fmt.Errorf("%w: %w", errBadBody, err)
}
