package listener

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestLimitHoldsTheExcessInTheBacklog: two listeners share a limit of 2. A third connection
// is not accepted (it waits in the backlog) until one of the two closes; closing twice gives
// back one slot only; closing a listener ends an Accept that waits for a slot.
func TestLimitHoldsTheExcessInTheBacklog(t *testing.T) {
	limit := NewLimit(2)
	var lns []net.Listener
	for range 2 {
		inner, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln := limit.Wrap(inner)
		defer ln.Close()
		lns = append(lns, ln)
	}
	full := make(chan struct{}, 10)
	limit.OnFull = func() { full <- struct{}{} }
	dial := func(ln net.Listener) net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	accepted := make(chan net.Conn, 4)
	acceptOne := func(ln net.Listener) {
		go func() {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}()
	}
	dial(lns[0])
	dial(lns[1])
	acceptOne(lns[0])
	acceptOne(lns[1])
	a, b := <-accepted, <-accepted
	if limit.Open() != 2 {
		t.Fatalf("open %d, want 2", limit.Open())
	}

	dial(lns[0]) // the kernel completes the handshake; herd does not accept it yet
	acceptOne(lns[0])
	select {
	case <-full:
	case <-time.After(5 * time.Second):
		t.Fatal("OnFull not called at the limit")
	}
	select {
	case c := <-accepted:
		t.Fatalf("accepted %v over the limit", c.RemoteAddr())
	case <-time.After(200 * time.Millisecond):
	}
	a.Close()
	a.Close() // a second Close must not free a second slot
	var c net.Conn
	select {
	case c = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("not accepted after a slot was freed")
	}
	if limit.Open() != 2 {
		t.Fatalf("open %d after one close and one accept, want 2", limit.Open())
	}

	acceptOne(lns[1]) // waits for a slot
	select {
	case <-full: // OnFull runs just before the wait
	case <-time.After(5 * time.Second):
		t.Fatal("OnFull not called at the limit")
	}
	lns[1].Close()
	select {
	case _, ok := <-accepted:
		if ok {
			t.Fatal("accepted on a closed listener")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("closing the listener did not end the waiting Accept")
	}
	_, err := lns[1].Accept()
	if !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on a closed listener: %v, want net.ErrClosed", err)
	}
	b.Close()
	c.Close()
	if limit.Open() != 0 {
		t.Fatalf("open %d after every close, want 0", limit.Open())
	}
}

// TestLimitedConnKeepsHalfClose: net/http half-closes after an error response and sends
// files with sendfile through ReadFrom, and the uwsgi front end resets a broken response:
// the wrapper passes all three on.
func TestLimitedConnKeepsHalfClose(t *testing.T) {
	var c net.Conn = &limitedConn{Conn: &net.TCPConn{}, limit: NewLimit(1)}
	if _, ok := c.(interface{ CloseWrite() error }); !ok {
		t.Error("no CloseWrite")
	}
	if _, ok := c.(interface{ SetLinger(int) error }); !ok {
		t.Error("no SetLinger")
	}
	if _, ok := c.(io.ReaderFrom); !ok {
		t.Error("no ReadFrom")
	}
}
