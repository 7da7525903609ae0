package server

import (
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
	}
	return s.ws
}
