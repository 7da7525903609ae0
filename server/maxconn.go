package server

import (
	"math"
	"net"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/herd-server/herd/config"
	"github.com/herd-server/herd/internal/listener"
)

// newConnLimit is the one bound on the client connections of every HTTP, HTTPS and uwsgi
// listener together (--max-connections, lowered to what the open-file limit holds). The
// admin listener and the control socket stay outside it: an operator can still look at a
// flooded master.
func newConnLimit(cfg *config.Config, log zerolog.Logger) *listener.Limit {
	want := cfg.MaxConnections
	if want == 0 {
		want = math.MaxInt32 // no limit of herd's own: only the open-file limit's
	}
	n, nofile, err := listener.FitToFDLimit(want)
	switch {
	case err != nil:
		log.Warn().Err(err).Int("max_connections", n).Msg("cannot check --max-connections against the open-file limit")
	case n < want:
		// Said only for a limit someone chose: the default meets many machines' open-file
		// limit, 0 asks for that limit, and the start-up line shows the limit in force
		// anyway (logged at every start, it was noise).
		ev := log.Warn()
		if cfg.MaxConnections == config.Defaults().MaxConnections || cfg.MaxConnections == 0 {
			ev = log.Debug()
		}
		ev.Int("max_connections", n).Int("wanted", cfg.MaxConnections).Uint64("open_file_limit", nofile).
			Msg("--max-connections lowered to what the open-file limit holds (raise LimitNOFILE= or ulimit -n for more)")
	}
	limit := listener.NewLimit(n)
	limit.OnFull = fullWarning(log, limit, time.Minute)
	return limit
}

// limitAll wraps each listener in the limit.
func limitAll(limit *listener.Limit, lns []net.Listener) []net.Listener {
	out := make([]net.Listener, len(lns))
	for i, ln := range lns {
		out[i] = limit.Wrap(ln)
	}
	return out
}

// fullWarning logs that the limit is reached, at most once per interval: a flood reaches it
// on every accept.
func fullWarning(log zerolog.Logger, limit *listener.Limit, interval time.Duration) func() {
	var last atomic.Int64
	return func() {
		now := time.Now().UnixNano()
		prev := last.Load()
		if now-prev < int64(interval) || !last.CompareAndSwap(prev, now) {
			return
		}
		log.Warn().Int("max_connections", limit.Max()).
			Msg("max-connections reached: new connections wait in the listen backlog until one closes")
	}
}
