package rawio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/herd-server/herd/internal/herdtest"
)

// pair returns a connected Unix socket pair: the raw end and the plain peer.
func pair(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	raw, ok := New(c)
	if !ok {
		t.Fatal("a Unix connection has a descriptor")
	}
	t.Cleanup(func() { raw.Close(); peer.Close() })
	return raw, peer
}

func TestPendingGoesOutBeforeTheRead(t *testing.T) {
	raw, peer := pair(t)
	afters := 0
	raw.AfterPending = func() { afters++ }
	raw.SetPending([]byte("ping "), nil, []byte("one"))
	go func() {
		b := make([]byte, 8)
		n, _ := io.ReadFull(peer, b)
		_, _ = peer.Write(append([]byte("got:"), b[:n]...))
	}()
	b := make([]byte, 64)
	n, err := io.ReadAtLeast(raw, b, 12)
	if err != nil || string(b[:n]) != "got:ping one" || afters != 1 || raw.HasPending() {
		t.Fatalf("%q %v after=%d", b[:n], err, afters)
	}
}

// A pending write larger than the socket takes at once is finished before the read.
func TestLargePendingIsFinished(t *testing.T) {
	raw, peer := pair(t)
	big := bytes.Repeat([]byte("x"), 8<<20)
	raw.SetPending(big)
	go func() {
		n, _ := io.CopyN(io.Discard, peer, int64(len(big)))
		_, _ = peer.Write([]byte{byte(n >> 20)})
	}()
	b := make([]byte, 1)
	if _, err := raw.Read(b); err != nil || b[0] != 8 {
		t.Fatalf("%v %v", b, err)
	}
}

func TestWritevEOFAndErrors(t *testing.T) {
	raw, peer := pair(t)
	if err := raw.Writev([]byte("a"), []byte("bc"), nil, []byte("d")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(peer, b); err != nil || string(b) != "abcd" {
		t.Fatalf("%q %v", b, err)
	}
	if raw.PeerClosed() {
		t.Fatal("open peer seen closed")
	}
	peer.Close()
	herdtest.Eventually(t, 2*time.Second, "the closed peer seen closed", raw.PeerClosed)
	if n, err := raw.Read(b); n != 0 || err != io.EOF {
		t.Fatalf("read after close: %d %v", n, err)
	}
	var err error
	for range 10 { // the first write may still land in the buffer
		if _, err = raw.Write([]byte("x")); err != nil {
			break
		}
	}
	if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("write to a closed peer: %v", err)
	}
}

func TestDeadlinesHold(t *testing.T) {
	raw, _ := pair(t)
	_ = raw.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	raw.SetPending([]byte("nobody answers"))
	_, err := raw.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%v", err)
	}
}

func TestSendFile(t *testing.T) {
	raw, peer := pair(t)
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB: more than a socket takes at once
	f, rc := fileOf(t, data)
	if _, err := f.Seek(16, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(peer, int64(len(data))))
		got <- b
	}()
	n, err := raw.SendFile(rc, int64(len(data))) // asks for more than is left: stops at the end
	if err != nil || n != int64(len(data)-16) {
		t.Fatalf("sent %d: %v", n, err)
	}
	raw.Close()
	if b := <-got; !bytes.Equal(b, data[16:]) {
		t.Fatalf("peer got %d bytes, not the file from offset 16", len(b))
	}
}

// TestPeerSentFirst: bytes the peer sent before a Read that writes pending bytes began are
// read at once when PeerMaySendFirst is set (an HTTP client that pipelines), not left until
// more bytes come: the poller's readiness for them was dropped when it was armed.
func TestPeerSentFirst(t *testing.T) {
	raw, peer := pair(t)
	raw.PeerMaySendFirst = true
	if _, err := peer.Write([]byte("GET /2")); err != nil {
		t.Fatal(err)
	}
	// The peer's bytes are in raw's receive queue before the Read with pending bytes
	// starts: a read that only waited for the poller would wait for ever.
	waitReadable(t, raw)
	// Let the poller take the readiness of those bytes (the scheduler polls the network
	// while this goroutine sleeps): the time is the subject, the bug lived in that gap.
	time.Sleep(20 * time.Millisecond)
	raw.SetPending([]byte("answer 1"))
	_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, err := raw.Read(buf)
	if err != nil || string(buf[:n]) != "GET /2" {
		t.Fatalf("Read = %q, %v; want the bytes the peer had sent", buf[:n], err)
	}
	got := make([]byte, len("answer 1"))
	if _, err := io.ReadFull(peer, got); err != nil || string(got) != "answer 1" {
		t.Fatalf("the peer got %q, %v", got, err)
	}
}

// waitReadable waits until c's socket has bytes to read (FIONREAD), so that the test knows
// they arrived before the Read under test.
func waitReadable(t *testing.T, c *Conn) {
	t.Helper()
	herdtest.Eventually(t, 5*time.Second, "the peer's bytes in the socket", func() bool {
		var n int
		_ = c.rc.Control(func(fd uintptr) { n, _ = unixInq(int(fd)) })
		return n > 0
	})
}

func unixInq(fd int) (int, error) {
	var n int32
	_, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), uintptr(syscall.TIOCINQ), uintptr(unsafe.Pointer(&n)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// TestWriteTimeoutIsProgressBased: with WriteTimeout, a write to a peer that reads nothing
// fails once the timeout passes without progress, while a peer that reads slowly but
// steadily gets a write that takes several times the timeout; and the deadline is gone
// after the write, so a later write long after it is not failed by it.
func TestWriteTimeoutIsProgressBased(t *testing.T) {
	const timeout = 500 * time.Millisecond
	data := bytes.Repeat([]byte("x"), 2<<20) // ten times what a Unix socket buffers

	t.Run("stalled peer", func(t *testing.T) {
		raw, _ := pair(t)
		raw.WriteTimeout = 100 * time.Millisecond
		start := time.Now()
		err := raw.Writev(data)
		if !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(start) < raw.WriteTimeout {
			t.Fatalf("a write nobody reads: %v after %v", err, time.Since(start))
		}
	})
	t.Run("slow peer", func(t *testing.T) {
		raw, peer := pair(t)
		raw.WriteTimeout = timeout
		done := make(chan int64, 1)
		go func() { done <- slowRead(peer, int64(len(data))+1) }()
		start := time.Now()
		if err := raw.Writev(data); err != nil {
			t.Fatalf("a write read 64 KiB every 40 ms failed after %v: %v", time.Since(start), err)
		}
		if took := time.Since(start); took < 2*timeout {
			t.Fatalf("the write took %v: too fast to tell a progress-based deadline from a fixed one", took)
		}
		// The time is the subject: a deadline left behind by the write would have passed.
		<-time.After(timeout + 100*time.Millisecond)
		if _, err := raw.Write([]byte("y")); err != nil {
			t.Fatalf("a write after the slow one: %v (its deadline was left set)", err)
		}
		if n := <-done; n != int64(len(data))+1 {
			t.Fatalf("the peer read %d bytes", n)
		}
	})
	t.Run("sendfile to a stalled peer", func(t *testing.T) {
		raw, _ := pair(t)
		raw.WriteTimeout = 100 * time.Millisecond
		_, rc := fileOf(t, data)
		n, err := raw.SendFile(rc, int64(len(data)))
		if !errors.Is(err, os.ErrDeadlineExceeded) || n >= int64(len(data)) {
			t.Fatalf("sendfile nobody reads: %d bytes, %v", n, err)
		}
	})
}

// slowRead reads n bytes from c, 64 KiB every 40 ms, and returns how many it got.
func slowRead(c net.Conn, n int64) int64 {
	tick := time.NewTicker(40 * time.Millisecond) // the pace is the subject
	defer tick.Stop()
	buf := make([]byte, 64<<10)
	var got int64
	for got < n {
		<-tick.C
		m, err := io.ReadFull(c, buf[:min(int64(len(buf)), n-got)])
		got += int64(m)
		if err != nil {
			break
		}
	}
	return got
}

// fileOf writes data to a file and returns it open, with its RawConn for SendFile; it is
// closed when the test ends.
func fileOf(t *testing.T, data []byte) (*os.File, syscall.RawConn) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return f, rc
}
