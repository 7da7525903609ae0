package proxy

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/herd-server/herd/protocol"
)

// The master terminates WebSockets (docs/protocol.md, "WebSocket streams"): gorilla/websocket
// does the handshake, masking, fragmentation, ping/pong and the close handshake; the
// worker's app sees websocket.connect / receive / send / close as frames on its stream.

// MaxWebSocketMessage bounds a client's message (uvicorn's --ws-max-size): larger ones
// close the socket with 1009.
const MaxWebSocketMessage = 16 << 20

// closeWait bounds the close handshake: how long, after a close frame went out, the
// client has to answer it before its connection is closed anyway.
const closeWait = 5 * time.Second

// wsWriteTimeout bounds each write to a WebSocket client: one that takes no data for this
// long is cut, so that it holds nothing of the master's.
const wsWriteTimeout = 30 * time.Second

var wsWriteBuffers sync.Pool // write buffers are held only while a message goes out

// wsRelayBufs hold a client's message on its way to the app, in parts of at most 16 KiB:
// with a thousand sockets sending at once, 64 KiB each (the HTTP copy buffers) made the
// master 64 MiB larger for messages mostly under 1 KiB.
var wsRelayBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

var upgrader = websocket.Upgrader{
	// The app decides: it sees Origin in its scope, as under uvicorn.
	CheckOrigin:     func(*http.Request) bool { return true },
	WriteBufferPool: &wsWriteBuffers,
	// ReadBufferSize 0: the reader h1's Hijack gives (2 KiB) is the connection's.
}

// WebSockets counts the master's WebSockets for the metrics: open now, and messages each
// way. The zero value counts; Handler.WebSockets may share one across handlers.
type WebSockets struct {
	mu       sync.Mutex
	open     map[*wsSession]struct{}
	counters WebSocketCounts
}

// WebSocketCounts is what WebSockets tells the metrics.
type WebSocketCounts struct {
	Open               int
	Accepted           uint64
	MessagesIn         uint64 // from clients to the app
	MessagesOut        uint64 // from the app to clients
	BytesIn, BytesOut  uint64
	ClosedByWorkerGone uint64 // closed with 1012 because the worker's link broke
}

// Counts returns the counters now.
func (ws *WebSockets) Counts() WebSocketCounts {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	c := ws.counters
	c.Open = len(ws.open)
	return c
}

// CloseAll closes every open WebSocket with code and reason (the master stops).
func (ws *WebSockets) CloseAll(code int, reason string) {
	ws.mu.Lock()
	sessions := make([]*wsSession, 0, len(ws.open))
	for s := range ws.open {
		sessions = append(sessions, s)
	}
	ws.mu.Unlock()
	for _, s := range sessions {
		s.closeClient(code, reason)
	}
}

func (ws *WebSockets) add(s *wsSession, in bool, n int) {
	ws.mu.Lock()
	if in {
		ws.counters.MessagesIn++
		ws.counters.BytesIn += uint64(n)
	} else {
		ws.counters.MessagesOut++
		ws.counters.BytesOut += uint64(n)
	}
	ws.mu.Unlock()
}

func (ws *WebSockets) track(s *wsSession, open bool) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.open == nil {
		ws.open = map[*wsSession]struct{}{}
	}
	if open {
		ws.open[s] = struct{}{}
		ws.counters.Accepted++
	} else {
		delete(ws.open, s)
	}
}

// isWebSocketHandshake reports whether r asks for a WebSocket (RFC 6455 4.2.1) over
// HTTP/1.1.
func isWebSocketHandshake(r *http.Request) bool {
	if r.ProtoMajor != 1 || r.Method != http.MethodGet || !websocket.IsWebSocketUpgrade(r) {
		return false
	}
	key, err := base64.StdEncoding.DecodeString(r.Header.Get("Sec-Websocket-Key"))
	return err == nil && len(key) == 16 && r.Header.Get("Sec-Websocket-Version") == "13"
}

// serveWebSocket serves a WebSocket handshake request through a framed worker; false when
// r is no such request (or the worker speaks uwsgi: then the request was answered as plain
// HTTP).
func (h *Handler) serveWebSocket(w http.ResponseWriter, r *http.Request, rec *Record) bool {
	if h.WebSockets == nil || !isWebSocketHandshake(r) {
		return false
	}
	var varsArr [48]protocol.Var
	vars := RequestVars(varsArr[:0], r, h.connInfo(r), 0)
	rec.Client = vars[remoteAddrVar].Value
	vars, mounted := mountVars(vars, h.Mount)
	if !mounted {
		rec.Status = h.fail(w, r, errNotMounted)
		return true
	}
	packet, err := protocol.AppendPacket(nil, protocol.ModifierKeepAlive, vars)
	if err != nil {
		rec.Status = h.fail(w, r, fmt.Errorf("%w: %w", errHeadersTooLarge, err))
		return true
	}
	lease, err := h.dispatch(r.Context(), packet, &body{}, rec, clientGone(w))
	if err != nil {
		rec.Status = h.fail(w, r, err)
		return true
	}
	if lease.Stream() == nil {
		_ = h.answer(w, r, rec, lease) // a WSGI worker: it answers the handshake as HTTP
		return true
	}
	s := &wsSession{streamExchange: streamExchange{h: h, w: w, r: r, rec: rec, lease: lease, st: lease.Stream()}}
	s.st.NoDeadline()
	err = s.run(packet)
	lease.Release(err == nil)
	if errors.Is(err, errAborted) {
		panic(http.ErrAbortHandler)
	}
	return true
}

// wsSession is one WebSocket between a client and a worker's app; its exchange is the
// handshake's, which a denial answers as an HTTP stream does.
type wsSession struct {
	streamExchange

	mu     sync.Mutex
	conn   *websocket.Conn
	closed bool // a close frame went to the client
}

// run sends the handshake to the app and follows its decision: accept (then the session),
// close or END (a 403 or 500), or an HTTP response of its own (a denial).
func (s *wsSession) run(packet []byte) error {
	ctx := s.r.Context()
	if err := s.st.Send(ctx, protocol.FrameWSConnect, 0, packet); err != nil {
		return s.refuse(err)
	}
	for {
		f, ok, err := s.st.Receive(ctx, time.Hour)
		if err != nil {
			return s.refuse(fmt.Errorf("%w: %w", errWorkerFailed, err))
		}
		if !ok {
			continue
		}
		switch f.Type {
		case protocol.FrameWSAccept:
			return s.accept(f.Payload)
		case protocol.FrameWSClose:
			s.rec.Status = http.StatusForbidden
			writeShortStatus(s.w, http.StatusForbidden)
			return s.drain()
		case protocol.FrameResponseStart, protocol.FrameResponseBody:
			done, err := s.take(f)
			for !done && err == nil {
				if f, ok, err = s.st.Receive(ctx, time.Hour); err == nil && ok {
					done, err = s.take(f)
				}
			}
			return s.finish(err)
		default:
			return s.refuse(fmt.Errorf("%w: %s before the WebSocket handshake's answer", errWorkerFailed, f.Type))
		}
	}
}

// refuse answers a handshake the app did not take (an END, a failure) with its status.
func (s *wsSession) refuse(err error) error {
	s.rec.Status = s.h.fail(s.w, s.r, err)
	return err
}

// drain waits for the worker's END of a stream it closed before accepting.
func (s *wsSession) drain() error {
	for {
		f, ok, err := s.st.Receive(s.r.Context(), closeWait)
		if err != nil || !ok || f.Type == protocol.FrameEnd {
			return nil
		}
	}
}

// accept completes the handshake with the app's subprotocol and headers, then relays
// messages both ways until either side closes.
func (s *wsSession) accept(p []byte) error {
	header := http.Header{}
	sub, err := protocol.DecodeAccept(p, func(k, v []byte) {
		name := http.CanonicalHeaderKey(string(k))
		if !hopByHop[name] && !strings.HasPrefix(name, "Sec-Websocket-") {
			header.Add(name, string(v))
		}
	})
	if err != nil {
		return s.refuse(fmt.Errorf("%w: %w", errWorkerFailed, err))
	}
	if sub != "" {
		header.Set("Sec-Websocket-Protocol", sub)
	}
	conn, err := upgrader.Upgrade(s.w, s.r, header)
	if err != nil {
		s.rec.Status = http.StatusBadRequest
		return nil // Upgrade answered the client; the worker hears DISCONNECT
	}
	conn.SetReadLimit(MaxWebSocketMessage)
	s.rec.Status = http.StatusSwitchingProtocols
	s.mu.Lock()
	s.conn = conn
	s.mu.Unlock()
	s.h.WebSockets.track(s, true)
	defer s.h.WebSockets.track(s, false)
	defer conn.Close()

	readDone := make(chan struct{})
	ctx, stop := context.WithCancel(s.r.Context())
	defer func() {
		stop()
		_ = conn.NetConn().Close() // ends the client reader, if it still reads
		<-readDone
	}()
	go func() {
		defer close(readDone)
		defer stop() // the client closed: the session ends once the app is told
		s.fromClient(ctx, conn)
	}()
	return s.toClient(ctx, conn)
}

// fromClient relays the client's messages to the app, each as it arrives (a large one in
// parts), until the client closes or its connection fails.
func (s *wsSession) fromClient(ctx context.Context, conn *websocket.Conn) {
	for {
		kind, rd, err := conn.NextReader()
		if err != nil {
			var ce *websocket.CloseError
			code := websocket.CloseAbnormalClosure
			reason := ""
			switch {
			case errors.As(err, &ce):
				code, reason = ce.Code, ce.Text
				s.mu.Lock()
				s.closed = true // the library answered the client's close frame
				s.mu.Unlock()
			case errors.Is(err, websocket.ErrReadLimit):
				code = websocket.CloseMessageTooBig
				s.closeClient(code, "message too big")
			}
			_ = s.st.Send(ctx, protocol.FrameWSClose, 0, protocol.AppendClose(nil, uint16(code), truncateReason(reason)))
			return
		}
		t := protocol.FrameWSBinary
		if kind == websocket.TextMessage {
			t = protocol.FrameWSText
		}
		n, err := relayMessage(ctx, s.st, t, rd)
		if err != nil {
			return
		}
		s.h.WebSockets.add(s, true, n)
	}
}

// relayMessage sends one client message to the app as frames, the last without FlagMore.
func relayMessage(ctx context.Context, st Stream, t protocol.FrameType, rd io.Reader) (int, error) {
	bufp := wsRelayBufs.Get().(*[]byte)
	defer wsRelayBufs.Put(bufp)
	buf := *bufp
	total := 0
	have := 0
	for {
		n, err := rd.Read(buf[have:])
		have += n
		total += n
		if err == io.EOF {
			return total, st.Send(ctx, t, 0, buf[:have])
		}
		if err != nil {
			return total, err
		}
		if have == len(buf) {
			if err := st.Send(ctx, t, protocol.FlagMore, buf); err != nil {
				return total, err
			}
			have = 0
		}
	}
}

// toClient relays the app's frames to the client until the stream ends.
func (s *wsSession) toClient(ctx context.Context, conn *websocket.Conn) error {
	var msg io.WriteCloser
	msgBytes := 0
	for {
		f, ok, err := s.st.Receive(ctx, time.Hour)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return nil
			}
			s.h.WebSockets.mu.Lock()
			s.h.WebSockets.counters.ClosedByWorkerGone++
			s.h.WebSockets.mu.Unlock()
			s.closeClient(websocket.CloseServiceRestart, "service restart")
			return nil
		}
		if !ok {
			continue
		}
		switch f.Type {
		case protocol.FrameWSText, protocol.FrameWSBinary:
			if msg == nil {
				kind := websocket.BinaryMessage
				if f.Type == protocol.FrameWSText {
					kind = websocket.TextMessage
				}
				_ = conn.SetWriteDeadline(time.Now().Add(wsWriteTimeout))
				if msg, err = conn.NextWriter(kind); err != nil {
					return nil // the client is gone: the app hears it from fromClient
				}
			}
			if _, err := msg.Write(f.Payload); err != nil {
				return nil
			}
			msgBytes += len(f.Payload)
			if f.Flags&protocol.FlagMore == 0 {
				if err := msg.Close(); err != nil {
					return nil
				}
				s.h.WebSockets.add(s, false, msgBytes)
				msg, msgBytes = nil, 0
			}
		case protocol.FrameWSClose:
			code, reason, _ := protocol.DecodeClose(f.Payload)
			s.closeClient(int(code), reason)
			s.awaitEnd(ctx)
			return nil
		case protocol.FrameEnd:
			code := websocket.CloseNormalClosure
			if f.Payload[0] != 0 {
				code = websocket.CloseInternalServerErr
			}
			s.closeClient(code, "")
			return nil
		}
	}
}

// awaitEnd gives the client its time to answer our close frame, and the app its time to
// end the stream, before the connection goes.
func (s *wsSession) awaitEnd(ctx context.Context) {
	for {
		f, ok, err := s.st.Receive(ctx, closeWait)
		if err != nil || !ok || f.Type == protocol.FrameEnd {
			return
		}
	}
}

// closeClient sends the client a close frame, once: code must be one a close frame may
// carry (the app's otherwise becomes 1000).
func (s *wsSession) closeClient(code int, reason string) {
	s.mu.Lock()
	conn, closed := s.conn, s.closed
	s.closed = true
	s.mu.Unlock()
	if conn == nil || closed {
		return
	}
	if code < 0 || code > 0xffff || !protocol.ValidCloseCode(uint16(code)) {
		code = websocket.CloseNormalClosure
	}
	msg := websocket.FormatCloseMessage(code, truncateReason(reason))
	_ = conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(closeWait))
	// The client's answering close ends fromClient; a client that never answers is cut.
	_ = conn.NetConn().SetReadDeadline(time.Now().Add(closeWait))
}

// truncateReason keeps a close reason within the 123 bytes a close frame has room for,
// on a UTF-8 boundary.
func truncateReason(r string) string {
	if len(r) <= 123 {
		return r
	}
	r = r[:123]
	for len(r) > 0 && r[len(r)-1]&0xc0 == 0x80 {
		r = r[:len(r)-1]
	}
	if len(r) > 0 && r[len(r)-1] >= 0xc0 {
		r = r[:len(r)-1]
	}
	return r
}
