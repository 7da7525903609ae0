package server

import (
	"math"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/herd-server/herd/config"
	"github.com/herd-server/herd/internal/fdbudget"
	"github.com/herd-server/herd/internal/listener"
	"github.com/herd-server/herd/internal/logevery"
	"github.com/herd-server/herd/proxy"
)

// fdBudget is the master's open-file limit shared out: the connection limit over every
// HTTP, HTTPS and uwsgi listener together (--max-connections, lowered to what the limit
// holds), and the bound on the descriptors requests hold on temporary files. The admin
// listener and the control socket stay outside the connection limit (an operator can still
// look at a flooded master); the admin one has a small bound of its own, inside the
// master's reserve.
type fdBudget struct {
	conns *listener.Limit
	files *fdbudget.Files
}

func newFDBudget(cfg *config.Config, log zerolog.Logger) fdBudget {
	want := cfg.MaxConnections
	if want == 0 {
		want = math.MaxInt32 // no limit of herd's own: only the open-file limit's
	}
	split, err := fdbudget.Plan(want, masterFDs(cfg))
	switch {
	case err != nil:
		log.Warn().Err(err).Int("max_connections", split.Conns).Msg("cannot check --max-connections against the open-file limit")
	case split.Conns < want:
		// Said only for a limit someone chose: the default meets many machines' open-file
		// limit, 0 asks for that limit, and the start-up line shows the limit in force
		// anyway (logged at every start, it was noise).
		ev := log.Warn()
		if cfg.MaxConnections == config.Defaults().MaxConnections || cfg.MaxConnections == 0 {
			ev = log.Debug()
		}
		ev.Int("max_connections", split.Conns).Int("wanted", cfg.MaxConnections).Uint64("open_file_limit", split.NoFile).
			Int("reserved", split.Reserve).Int("temp_files", split.Files).
			Msg("--max-connections lowered to what the open-file limit holds (raise LimitNOFILE= or ulimit -n for more)")
	}
	limit := listener.NewLimit(split.Conns)
	limit.OnFull = fullWarning(log, limit, time.Minute)
	var files *fdbudget.Files
	if err == nil {
		files = fdbudget.NewFiles(split.Files)
	}
	return fdBudget{conns: limit, files: files}
}

// The master's own descriptors, which the open-file limit keeps for it (masterFDs).
const (
	// masterFixedFDs: listeners, log files, the poller, the control socket and its
	// clients, file watchers, static directories, and room.
	masterFixedFDs = 64
	// adminConns bounds the admin server's connections (limitAdmin).
	adminConns = 32
	// perWorkerFDs is what a worker holds in the master besides its links: its control
	// channel, its output pipes' read ends, its pidfd; and while it is spawned, its
	// listening socket, the worker's ends of the pipes and exec's own pipe.
	perWorkerFDs = 8
)

// masterFDs is how many descriptors the master keeps for itself: the fixed part, and per
// worker its links (one per thread) and perWorkerFDs, twice over, since during a reload
// the new generation starts while the old one serves. So however many connections and
// temporary files a flood holds, a worker can always be spawned.
func masterFDs(cfg *config.Config) int {
	return masterFixedFDs + adminConns + 2*cfg.Workers*(cfg.Threads+perWorkerFDs)
}

// limitAdmin bounds the admin listener's connections; nil stays nil.
func limitAdmin(ln net.Listener) net.Listener {
	if ln == nil {
		return nil
	}
	return listener.NewLimit(adminConns).Wrap(ln)
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
	every := logevery.New(interval)
	return func() {
		if ok, missed := every.Allow(); ok {
			log.Warn().Int("max_connections", limit.Max()).Int64("times_since_last_warning", missed).
				Msg("max-connections reached: new connections wait in the listen backlog until one closes")
		}
	}
}

// registerBudgets shows on /metrics how much of each bound the requests hold now.
func registerBudgets(reg prometheus.Registerer, h *proxy.Handler, files *fdbudget.Files) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herd_body_memory_bytes", Help: "Bytes of --body-memory that request bodies and buffered answers hold (their buffers' capacity)."},
			func() float64 { return float64(h.MemoryInUse()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herd_body_memory_kept_bytes", Help: "Bytes of --body-memory in buffers kept for reuse."},
			func() float64 { return float64(h.MemoryKept()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herd_temp_bytes", Help: "Bytes of --temp-space that spilled bodies and spooled answers hold."},
			func() float64 { return float64(h.TempBytes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herd_temp_files", Help: "Descriptors of temporary files requests hold, out of their share of the open-file limit."},
			func() float64 { return float64(files.InUse()) }))
}
