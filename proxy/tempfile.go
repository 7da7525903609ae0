package proxy

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// The master's temporary files: spilled request bodies and spooled answers, unlinked at
// once in TempDir (the runtime directory). Each is counted twice: its descriptors in
// TempFiles, its bytes in TempSpace; and its failures are the server's, never the client's.

// tempSpaceStep is how much of TempSpace a file of unknown length takes at a time.
const tempSpaceStep = 1 << 20

// fileWriter writes one temporary file, counting its bytes in TempSpace as it grows, and
// keeps its error: a copy into it that fails is then told apart, the client's body failing
// or the server's disk.
type fileWriter struct {
	h        *Handler
	f        *os.File
	op       string // what the file is for, in errors
	files    int    // descriptors it holds in TempFiles
	reserved int64  // bytes of TempSpace it counts
	written  int64
	err      error
}

// createTemp makes an unlinked temporary file for op, named by pattern, counted as one
// descriptor in TempFiles, or two with twice: then it is opened a second time (second, to
// read from its start while it is written). Without room: errNoTempFile.
func (h *Handler) createTemp(pattern, op string, twice bool) (w *fileWriter, second *os.File, err error) {
	files := 1
	if twice {
		files = 2
	}
	if !h.TempFiles.Take(files) {
		return nil, nil, fmt.Errorf("%w: %s: all %d descriptors for temporary files in use", errNoTempFile, op, h.TempFiles.Max())
	}
	f, err := os.CreateTemp(h.TempDir, pattern)
	if err == nil && twice {
		if second, err = os.Open(f.Name()); err != nil {
			_ = f.Close()
		}
	}
	if err != nil {
		if f != nil {
			_ = os.Remove(f.Name())
		}
		h.TempFiles.Give(files)
		return nil, nil, tempFileError(op, err)
	}
	_ = os.Remove(f.Name())
	return &fileWriter{h: h, f: f, op: op, files: files}, second, nil
}

// reserve makes sure n more bytes may be written: counted in TempSpace, or errTempSpace.
func (w *fileWriter) reserve(n int64) error {
	need := w.written + n - w.reserved
	if need <= 0 {
		return nil
	}
	if w.h.TempSpace <= 0 {
		return nil
	}
	counted, ok := w.h.tempSpace.take(need, w.h.TempSpace)
	if !ok {
		w.err = fmt.Errorf("%w: %d bytes more than --temp-space (%d) holds", errTempSpace, need, w.h.TempSpace)
		return w.err
	}
	w.reserved += counted
	return nil
}

func (w *fileWriter) Write(p []byte) (int, error) {
	if w.written+int64(len(p)) > w.reserved {
		if err := w.reserve(max(int64(len(p)), tempSpaceStep)); err != nil {
			return 0, err
		}
	}
	n, err := w.f.Write(p)
	w.written += int64(n)
	if err != nil {
		w.err = err
	}
	return n, err
}

// failure is the error to answer for the file's own failure.
func (w *fileWriter) failure() error { return tempFileError(w.op, w.err) }

// release gives back the file's count of TempSpace; closing the file is its owner's.
func (w *fileWriter) release() {
	if w != nil && w.reserved > 0 {
		w.h.tempSpace.give(w.reserved)
		w.reserved = 0
	}
}

// tempFileError says what a temporary file's failure is: the server's, never the client's.
// Out of descriptors or of --temp-space: 503 (it passes); the disk full: 507; anything else
// 500.
func tempFileError(op string, err error) error {
	switch {
	case errors.Is(err, errNoTempFile), errors.Is(err, errTempSpace):
		return err
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return fmt.Errorf("%w: %s: %w", errNoTempFile, op, err)
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("%w: %s: %w", errDiskFull, op, err)
	}
	return fmt.Errorf("%w: %s: %w", errTempFile, op, err)
}

// spoolFile is a spooled answer's temporary file, open twice: in to write the worker's
// bytes, out to send them, each with its own offset.
type spoolFile struct {
	*fileWriter // in
	out         *os.File
}

// openSpool makes the spool of an answer of length bytes, counted in full in TempSpace
// and as two descriptors in TempFiles.
func (h *Handler) openSpool(length int64) (*spoolFile, error) {
	fw, out, err := h.createTemp("response-*", "spool the response", true)
	if err != nil {
		return nil, err
	}
	sp := &spoolFile{fileWriter: fw, out: out}
	if err := fw.reserve(length); err != nil {
		sp.close()
		return nil, err
	}
	return sp, nil
}

// close closes both ends and gives back what the spool counted.
func (sp *spoolFile) close() {
	_ = sp.f.Close()
	if sp.out != nil {
		_ = sp.out.Close()
	}
	sp.h.TempFiles.Give(sp.files)
	sp.release()
}
