package server

import (
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/herd-server/herd/internal/herdtest"
)

func dialWS(t *testing.T, url string, h http.Header) (*websocket.Conn, *http.Response) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	c, resp, err := d.Dial(url, h)
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", url, err, resp)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	return c, resp
}

func TestASGIWebSocket(t *testing.T) {
	h := startASGI(t, 2)
	ws := "ws://" + h.Addr

	t.Run("echo, subprotocol, fragments both ways, state", func(t *testing.T) {
		c, resp := dialWS(t, ws+"/ws", http.Header{"Sec-Websocket-Protocol": {"chat, other"}})
		if resp.Header.Get("Sec-Websocket-Protocol") != "chat" {
			t.Fatalf("subprotocol %q", resp.Header.Get("Sec-Websocket-Protocol"))
		}
		if err := c.WriteMessage(websocket.TextMessage, []byte("héllo")); err != nil {
			t.Fatal(err)
		}
		if kind, msg, err := c.ReadMessage(); err != nil || kind != websocket.TextMessage || string(msg) != "héllo" {
			t.Fatalf("%d %q %v", kind, msg, err)
		}
		big := []byte(strings.Repeat("0123456789", 300000)) // 3 MB: many frames and credits
		w, _ := c.NextWriter(websocket.BinaryMessage)
		for i := 0; i < len(big); i += 100000 {
			_, _ = w.Write(big[i : i+100000]) // the client's fragments
		}
		_ = w.Close()
		if kind, msg, err := c.ReadMessage(); err != nil || kind != websocket.BinaryMessage || string(msg) != string(big) {
			t.Fatalf("%d, %d bytes, %v", kind, len(msg), err)
		}
		_ = c.WriteMessage(websocket.TextMessage, []byte("state"))
		if _, msg, _ := c.ReadMessage(); string(msg) != `{"started": "yes"}` {
			t.Fatalf("state %q", msg)
		}
	})

	t.Run("ping answered by the master", func(t *testing.T) {
		c, _ := dialWS(t, ws+"/ws", nil)
		pong := make(chan string, 1)
		c.SetPongHandler(func(s string) error { pong <- s; return nil })
		_ = c.WriteControl(websocket.PingMessage, []byte("p1"), time.Now().Add(time.Second))
		_ = c.WriteMessage(websocket.TextMessage, []byte("x"))
		_, _, _ = c.ReadMessage() // pongs are handled while reading
		select {
		case s := <-pong:
			if s != "p1" {
				t.Fatalf("pong %q", s)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no pong")
		}
	})

	t.Run("the app closes with its code", func(t *testing.T) {
		c, _ := dialWS(t, ws+"/ws", nil)
		_ = c.WriteMessage(websocket.TextMessage, []byte("close:4001"))
		_, _, err := c.ReadMessage()
		if !websocket.IsCloseError(err, 4001) {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("denials", func(t *testing.T) {
		d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
		_, resp, err := d.Dial(ws+"/ws-deny", nil)
		if err == nil || resp == nil || resp.StatusCode != 403 {
			t.Fatalf("ws-deny: %v %v", err, resp)
		}
		_, resp, err = d.Dial(ws+"/ws-close", nil)
		if err == nil || resp == nil || resp.StatusCode != 403 {
			t.Fatalf("ws-close: %v %v", err, resp)
		}
	})

	t.Run("the client's close reaches the app", func(t *testing.T) {
		c, _ := dialWS(t, ws+"/ws", nil)
		_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye"))
		if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, 1000) {
			t.Fatalf("got %v", err)
		}
		h.WaitStatus(10*time.Second, "the socket's slot is free", func(st herdtest.Status) bool { return st.InFlight == 0 })
	})
}

// TestASGIWebSocketReload: a reload leaves open WebSockets on the old worker until
// --graceful-timeout, then closes them with 1012 (service restart); new ones go to the
// new generation at once.
func TestASGIWebSocketReload(t *testing.T) {
	h := startASGI(t, 1, "--graceful-timeout", "2s")
	ws := "ws://" + h.Addr
	var conns []*websocket.Conn
	for range 5 {
		c, _ := dialWS(t, ws+"/ws", nil)
		conns = append(conns, c)
	}
	h.Signal(syscall.SIGHUP)
	h.WaitReady(2, 20*time.Second)
	c, _ := dialWS(t, ws+"/ws", nil)
	_ = c.WriteMessage(websocket.TextMessage, []byte("new"))
	if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "new" {
		t.Fatalf("a socket after the reload: %q %v", msg, err)
	}
	var wg sync.WaitGroup
	for _, old := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = old.WriteMessage(websocket.TextMessage, []byte("still here"))
			if _, msg, err := old.ReadMessage(); err != nil || string(msg) != "still here" {
				t.Errorf("an old socket before the graceful timeout: %q %v", msg, err)
			}
			_, _, err := old.ReadMessage()
			if !websocket.IsCloseError(err, websocket.CloseServiceRestart) {
				t.Errorf("an old socket got %v, want close 1012", err)
			}
		}()
	}
	wg.Wait()
}
