package proxy

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
)

// TestBodyMemoryBudget: bodies held in memory at once stay within BodyMemory, counted by
// the buffers they really hold, with the buffers kept for reuse. Past it a body goes to a
// file whatever its size; a kept buffer is dropped to make room for another size; a
// chunked body is moved to a buffer of its own size when there is room.
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
	held := func(wantInUse, wantAll int64) {
		t.Helper()
		if inUse, all := h.memory.held(); inUse != wantInUse || all != wantAll {
			t.Fatalf("in use %d, held %d; want %d, %d", inUse, all, wantInUse, wantAll)
		}
	}

	b1, b2 := read(mib), read(mib)
	if !inMemory(b1) || !inMemory(b2) {
		t.Fatalf("two bodies within the budget: in memory %v %v", inMemory(b1), inMemory(b2))
	}
	held(2*mib, 2*mib)
	b3 := read(1000)
	if inMemory(b3) || b3.size != 1000 {
		t.Fatalf("a body past the budget: in memory %v, %d bytes", inMemory(b3), b3.size)
	}
	b1.Close()
	held(mib, 2*mib) // b1's buffer kept for reuse, and counted
	b4 := read(-1)   // chunked: read into the kept 1 MiB buffer; no room for a smaller one
	if !inMemory(b4) || b4.size != 1000 || cap(b4.mem) != mib {
		t.Fatalf("a chunked body after room came back: in memory %v, %d bytes in %d", inMemory(b4), b4.size, cap(b4.mem))
	}
	held(2*mib, 2*mib)
	for _, b := range []*body{b2, b3, b4} {
		b.Close()
	}
	held(0, 2*mib)
	b5 := read(-1) // into a kept 1 MiB, then into 4 KiB: the other kept 1 MiB makes room
	if !inMemory(b5) || b5.size != 1000 || cap(b5.mem) != 4096 {
		t.Fatalf("a chunked body with room: in memory %v, %d bytes in %d", inMemory(b5), b5.size, cap(b5.mem))
	}
	held(4096, mib+4096)
	b5.Close()
	held(0, mib+4096)

	// A short body gives its buffer back too.
	if _, err := h.readBodyFrom(strings.NewReader("short"), 100); err == nil {
		t.Fatal("a body shorter than its length was accepted")
	}
	held(0, mib+4096)
	// No bound: every body that fits --body-buffer stays in memory, counted nowhere.
	h.BodyMemory = 0
	var bodies []*body
	for range 4 {
		bodies = append(bodies, read(mib))
	}
	for _, b := range bodies {
		if !inMemory(b) {
			t.Fatal("a body went to a file with no bound on memory")
		}
		b.Close()
	}
	held(0, mib+4096)
}

// TestBodyMemoryCountsCapacity: issue 21's case. Bodies of 512 KiB and a byte are held in
// buffers of 1 MiB, and count so: --body-memory 4 MiB holds four of them, not eight (its
// 128 MiB let the master reach 226 MiB). What is kept for reuse counts too, and makes room.
func TestBodyMemoryCountsCapacity(t *testing.T) {
	const kib = 1 << 10
	h := &Handler{BodyBuffer: 1024 * kib, BodyMemory: 4096 * kib, TempDir: t.TempDir()}
	payload := bytes.Repeat([]byte("x"), 512*kib+1)
	var bodies []*body
	inMemory := 0
	for range 8 {
		b, err := h.readBodyFrom(bytes.NewReader(payload), int64(len(payload)))
		if err != nil {
			t.Fatal(err)
		}
		if b.file == nil {
			inMemory++
		}
		bodies = append(bodies, b)
	}
	if inUse, _ := h.memory.held(); inMemory != 4 || inUse != 4096*kib {
		t.Fatalf("%d of 8 bodies of 512 KiB + 1 in memory, %d bytes counted; want 4, 4 MiB", inMemory, inUse)
	}
	for _, b := range bodies {
		b.Close()
	}
	if inUse, all := h.memory.held(); inUse != 0 || all != 4096*kib {
		t.Fatalf("after: %d in use, %d held; want 0 and the 4 MiB kept", inUse, all)
	}
	b, err := h.readBodyFrom(bytes.NewReader(payload[:16*kib]), 16*kib)
	if err != nil || b.file != nil {
		t.Fatalf("a 16 KiB body beside 4 MiB kept: %v, spilled %v", err, b != nil && b.file != nil)
	}
	b.Close()
	if _, all := h.memory.held(); all > 4096*kib {
		t.Fatalf("%d bytes held, past the 4 MiB bound", all)
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
