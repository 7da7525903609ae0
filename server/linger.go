package server

import (
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// connTracker lets a graceful stop hand keep-alive clients off without the keep-alive race.
// Closing an idle keep-alive connection (what http.Server.Shutdown and
// SetKeepAlivesEnabled(false) do at once) races with a client that is sending its next
// request on it at that moment: the client sees EOF for a request nobody read. Instead, once
// the stop begins every response says Connection: close, the listeners close so new
// connections go to the successor (or are refused, for a balancer to retry), and the stop
// lingers until the clients have taken their last answer and gone, or a short bound passes.
type connTracker struct {
	open    atomic.Int64
	closing atomic.Bool
}

// connState is the http.Server's ConnState hook.
func (c *connTracker) connState(_ net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		c.open.Add(1)
	case http.StateClosed, http.StateHijacked:
		c.open.Add(-1)
	}
}

// handler marks every response of a closing server Connection: close.
func (c *connTracker) handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.closing.Load() {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}

// linger waits until no client connection is open, at most max, or until abort.
func (c *connTracker) linger(max time.Duration, abort <-chan struct{}) {
	deadline := time.NewTimer(max)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for c.open.Load() > 0 {
		select {
		case <-deadline.C:
			return
		case <-abort:
			return
		case <-tick.C:
		}
	}
}

// keepAliveLinger bounds how long a graceful stop waits for keep-alive clients to take a
// last answer: a client idle for longer is not about to send, and is closed by Shutdown.
const keepAliveLinger = time.Second
