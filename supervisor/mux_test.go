package supervisor

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/herd-server/herd/protocol"
)

// A peer written here plays a worker that breaks the framed link's rules, which the real
// worker (scripts/herd_worker, tested in scripts/test_asgi_worker.py and end to end in
// server/asgi_test.go) never does: the master must fail the streams, not hang or grow.

// peerLink dials a mux to a socket served by peer, and returns the lease of one stream.
func peerLink(t *testing.T, peer func(c net.Conn)) (*muxConn, *Stream) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "w.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		peer(c)
	}()
	over := make(chan *Stream, 4)
	m, err := dialMux(path, time.Second, func(s *Stream) { over <- s })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.close(errors.New("test over")); ln.Close(); <-done })
	s, err := m.open(&Lease{})
	if err != nil {
		t.Fatal(err)
	}
	return m, s
}

// readFrame reads one frame the master sent; a frame of type 0 when the link closed.
func readFrame(t *testing.T, c net.Conn) protocol.Frame {
	var hdr [protocol.FrameHeaderSize]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return protocol.Frame{}
	}
	f, n, _ := protocol.ParseFrameHeader(hdr[:])
	f.Payload = make([]byte, n)
	_, _ = io.ReadFull(c, f.Payload)
	return f
}

func TestMuxStartedThenEnd(t *testing.T) {
	_, s := peerLink(t, func(c net.Conn) {
		f := readFrame(t, c)
		_, _ = c.Write(protocol.AppendFrame(nil, protocol.FrameStarted, 0, f.Stream, nil))
		_, _ = c.Write(protocol.AppendFrame(nil, protocol.FrameEnd, 0, f.Stream, []byte{1}))
		_, _ = io.Copy(io.Discard, c)
	})
	ctx := context.Background()
	if err := s.Send(ctx, protocol.FrameRequest, protocol.FlagEnd, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	f, ok, err := s.Receive(ctx, 5*time.Second)
	if err != nil || !ok || f.Type != protocol.FrameEnd || !s.Started() {
		t.Fatalf("%v %v %v started %v", f.Type, ok, err, s.Started())
	}
}

func TestMuxBreakBeforeStarted(t *testing.T) {
	_, s := peerLink(t, func(c net.Conn) { readFrame(t, c) }) // reads the request, then dies
	ctx := context.Background()
	_ = s.Send(ctx, protocol.FrameRequest, protocol.FlagEnd, make([]byte, 4))
	_, _, err := s.Receive(ctx, 5*time.Second)
	if !errors.Is(err, ErrLinkBroken) || s.Started() {
		t.Fatalf("got %v, started %v: want a broken link, never started", err, s.Started())
	}
}

func TestMuxWorkerPastItsCredit(t *testing.T) {
	m, s := peerLink(t, func(c net.Conn) {
		f := readFrame(t, c)
		_, _ = c.Write(protocol.AppendFrame(nil, protocol.FrameResponseStart, 0, f.Stream, protocol.AppendResponseStart(nil, 200, nil)))
		big := make([]byte, protocol.InitialWindow/2+1)
		for range 3 { // 96 KiB on a 64 KiB window, never granted more
			_, _ = c.Write(protocol.AppendFrame(nil, protocol.FrameResponseBody, 0, f.Stream, big))
		}
		_, _ = io.Copy(io.Discard, c)
	})
	// The proxy takes nothing: the body frames stay unconsumed, so the third is past the
	// credit the worker ever had.
	_ = s.Send(context.Background(), protocol.FrameRequest, protocol.FlagEnd, make([]byte, 4))
	select {
	case <-m.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the link still stands after the worker overran its credit")
	}
	if _, _, err := s.Receive(context.Background(), time.Second); !errors.Is(err, ErrLinkBroken) {
		// What came before the break is still handed out: take it, then the break.
		for err == nil {
			_, _, err = s.Receive(context.Background(), time.Second)
		}
		if !errors.Is(err, ErrLinkBroken) {
			t.Fatalf("got %v, want the link broken", err)
		}
	}
}

func TestMuxSendWaitsForCredit(t *testing.T) {
	granted := make(chan struct{})
	_, s := peerLink(t, func(c net.Conn) {
		got := 0
		for got < protocol.InitialWindow+10 {
			f := readFrame(t, c)
			if f.Type == 0 {
				return
			}
			if f.Type == protocol.FrameBody {
				got += len(f.Payload)
			}
			if got == protocol.InitialWindow && f.Type == protocol.FrameBody {
				close(granted)
				_, _ = c.Write(protocol.AppendFrame(nil, protocol.FrameWindow, 0, f.Stream, protocol.AppendWindow(nil, 1000)))
			}
		}
		_, _ = io.Copy(io.Discard, c)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Send(ctx, protocol.FrameBody, 0, make([]byte, protocol.InitialWindow+10)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-granted:
	default:
		t.Fatal("Send returned before the worker granted the credit it needed")
	}
}
