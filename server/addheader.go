package server

import (
	"net/http"
	"net/textproto"
	"strings"

	"github.com/herd-server/herd/config"
)

// addHeaders are the --add-header headers (uWSGI's add-header), parsed; nil without any.
func addHeaders(cfg *config.Config) http.Header {
	if len(cfg.AddHeader) == 0 {
		return nil
	}
	h := http.Header{}
	for _, line := range cfg.AddHeader {
		name, value, _ := strings.Cut(line, ":") // Validate checked the form
		h.Add(textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(name)), strings.TrimSpace(value))
	}
	return h
}

// withAddedHeaders sets the --add-header headers on every answer of the HTTP front ends
// before next writes it: herd's own (static files, errors, the development error page) as
// well as the app's, where the proxy adds them only when the app did not set them.
func withAddedHeaders(next http.Handler, h http.Header) http.Handler {
	if len(h) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dst := w.Header()
		for k, vv := range h {
			dst[k] = vv
		}
		next.ServeHTTP(w, r)
	})
}
