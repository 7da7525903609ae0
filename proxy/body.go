package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
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
}

var emptyBody = &body{}

func readBody(r *http.Request, memLimit, maxSize int64, tempDir string) (*body, error) {
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		return emptyBody, nil
	}
	return readBodyFrom(r.Body, r.ContentLength, memLimit, maxSize, tempDir)
}

// readBodyFrom reads a body of length bytes from src, or up to EOF when length is -1. A
// body shorter than its length is an error: the client left or lied.
func readBodyFrom(src io.Reader, length, memLimit, maxSize int64, tempDir string) (*body, error) {
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
	n, err := io.Copy(f, rest)
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
