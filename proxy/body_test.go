package proxy

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
)

// TestBodyMemoryBudget: bodies held in memory at once stay within BodyMemory; past it a body
// goes to a file whatever its size, and room comes back when a body is closed.
func TestBodyMemoryBudget(t *testing.T) {
	const mib = 1 << 20
	h := &Handler{BodyBuffer: mib, BodyMemory: 2 * mib, TempDir: t.TempDir()}
	payload := bytes.Repeat([]byte("x"), mib)
	read := func(length int64) *body {
		t.Helper()
		b, err := h.readBodyFrom(bytes.NewReader(payload[:max(length, 1000)]), length)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	inMemory := func(b *body) bool { return b.file == nil && b.mem != nil }

	b1, b2 := read(mib), read(mib)
	if !inMemory(b1) || !inMemory(b2) || h.bodyMemory.used.Load() != 2*mib {
		t.Fatalf("two bodies within the budget: in memory %v %v, used %d", inMemory(b1), inMemory(b2), h.bodyMemory.used.Load())
	}
	b3 := read(1000)
	if inMemory(b3) || b3.size != 1000 {
		t.Fatalf("a body past the budget: in memory %v, %d bytes", inMemory(b3), b3.size)
	}
	b1.Close()
	b4 := read(-1) // chunked: reserves the most it may hold, keeps what it holds
	if !inMemory(b4) || b4.size != 1000 || h.bodyMemory.used.Load() != mib+1000 {
		t.Fatalf("a chunked body after room came back: in memory %v, %d bytes, used %d", inMemory(b4), b4.size, h.bodyMemory.used.Load())
	}
	for _, b := range []*body{b2, b3, b4} {
		b.Close()
	}
	if used := h.bodyMemory.used.Load(); used != 0 {
		t.Fatalf("%d bytes still counted after every body closed", used)
	}

	// A short body gives its room back too.
	if _, err := h.readBodyFrom(strings.NewReader("short"), 100); err == nil {
		t.Fatal("a body shorter than its length was accepted")
	}
	if used := h.bodyMemory.used.Load(); used != 0 {
		t.Fatalf("%d bytes counted after a failed read", used)
	}
	// No bound: every body that fits --body-buffer stays in memory.
	h.BodyMemory = 0
	var held []*body
	for range 4 {
		held = append(held, read(mib))
	}
	for _, b := range held {
		if !inMemory(b) {
			t.Fatal("a body went to a file with no bound on memory")
		}
		b.Close()
	}
	if used := h.bodyMemory.used.Load(); used != 0 {
		t.Fatalf("%d bytes counted with no bound", used)
	}
}

// TestTempSpaceBudget: bytes in temporary files at once stay within TempSpace. A spilled
// body of known length is refused before it is read when it does not fit, one of unknown
// length once it passes the bound; both are the server's shortage (503), and their room
// comes back. A spool that does not fit is not made.
func TestTempSpaceBudget(t *testing.T) {
	const mib = 1 << 20
	h := &Handler{BodyBuffer: 4096, TempSpace: 2 * mib, TempDir: t.TempDir()}
	payload := bytes.Repeat([]byte("x"), 3*mib)
	b, err := h.readBodyFrom(bytes.NewReader(payload[:mib]), mib)
	if err != nil || b.file == nil || h.tempSpace.used.Load() != mib {
		t.Fatalf("a 1 MiB body within 2 MiB: %v, spilled %v, %d counted", err, b != nil && b.file != nil, h.tempSpace.used.Load())
	}
	for _, length := range []int64{3 * mib, -1} {
		_, err := h.readBodyFrom(bytes.NewReader(payload), length)
		if !errors.Is(err, errTempSpace) || requestStatus(err) != http.StatusServiceUnavailable {
			t.Errorf("3 MiB (length %d) past 2 MiB: %v (%d), want errTempSpace, 503", length, err, requestStatus(err))
		}
	}
	if _, err := h.openSpool(2 * mib); !errors.Is(err, errTempSpace) {
		t.Errorf("a 2 MiB spool beside a 1 MiB body within 2 MiB: %v", err)
	}
	b.Close()
	if used := h.tempSpace.used.Load(); used != 0 {
		t.Fatalf("%d bytes still counted after every file closed", used)
	}
	sf, err := h.openSpool(2 * mib)
	if err != nil {
		t.Fatalf("a 2 MiB spool alone: %v", err)
	}
	sf.close()
	if used := h.tempSpace.used.Load(); used != 0 {
		t.Fatalf("%d bytes still counted after the spool closed", used)
	}
}
