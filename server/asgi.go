package server

import (
	"github.com/gorilla/websocket"

	"github.com/herd-server/herd/proxy"
)

// webSockets is where the master's WebSockets are counted and, at a stop, closed: nil when
// the app is WSGI by configuration (a handshake then reaches it as a plain request).
func (s *Server) webSockets() *proxy.WebSockets {
	if s.cfg.Interface == "wsgi" {
		return nil
	}
	if s.ws == nil {
		s.ws = &proxy.WebSockets{}
		s.metrics.UseWebSockets(s.ws)
	}
	return s.ws
}

// closeWebSockets sends every open WebSocket a close frame with 1012 (service restart), as a
// worker retired by a reload does after --graceful-timeout: the master stops.
func (s *Server) closeWebSockets() {
	if s.ws != nil {
		s.ws.CloseAll(websocket.CloseServiceRestart, "service restart")
	}
}
