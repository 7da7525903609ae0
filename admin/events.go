package admin

import (
	"embed"
	"encoding/json"
	"net/http"
	"time"
)

// dashboardFS is the dashboard page: plain HTML, CSS and JavaScript, no build step and no
// external assets, served from the binary.
//
//go:embed dashboard
var dashboardFS embed.FS

// eventMessage is one server-sent event of /events: the stats and the per-second points
// the dashboard has not seen yet (the whole window in the first message).
type eventMessage struct {
	Now    int64   `json:"now"` // the server's unix second: the charts' right edge
	Stats  Stats   `json:"stats"`
	Series []Point `json:"series"`
}

// events streams a snapshot every tick as server-sent events until the client leaves or
// the server shuts down.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no") // nginx in front must not buffer the stream
	ticker := time.NewTicker(s.tick)
	defer ticker.Stop()
	history := windowSeconds - 1
	for {
		now := time.Now()
		msg := eventMessage{Now: now.Unix(), Stats: s.metrics.Stats(now, s.info), Series: s.metrics.window.series(now, history)}
		b, err := json.Marshal(msg)
		if err != nil {
			s.log.Error().Err(err).Msg("encode dashboard event")
			return
		}
		if _, err := w.Write(append(append([]byte("data: "), b...), '\n', '\n')); err != nil {
			return // the client left
		}
		flusher.Flush()
		history = 3 // the client merges points by their second
		select {
		case <-ticker.C:
		case <-r.Context().Done():
			return
		case <-s.closing:
			return
		}
	}
}
