package server

import (
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/herd-server/herd/config"
	"github.com/herd-server/herd/internal/fdbudget"
	"github.com/herd-server/herd/internal/logevery"
	"github.com/herd-server/herd/proxy"
	"github.com/herd-server/herd/proxy/static"
)

// withStatic puts the --static file server in front of app, on the HTTP and HTTPS front ends:
// behind nginx (the uwsgi front end) nginx serves the static files. The files it serves go
// to the access log and the metrics like the app's requests, with no worker. The func returned releases
// the directories; it is a no-op without --static.
func withStatic(cfg *config.Config, app http.Handler, onDone func(*proxy.Record), reg prometheus.Registerer, files *fdbudget.Files, log zerolog.Logger) (http.Handler, func() error, error) {
	if len(cfg.Static) == 0 {
		return app, func() error { return nil }, nil
	}
	maps, err := cfg.StaticMaps()
	if err != nil {
		return nil, nil, err
	}
	dirs := make([]static.Dir, 0, len(maps))
	for _, m := range maps {
		dirs = append(dirs, static.Dir{Prefix: m.Prefix, Path: m.Path})
	}
	staticLog := log.With().Str("component", "static").Logger()
	var shortOfFiles logevery.Every
	opts := static.Options{
		FollowSymlinks: cfg.StaticFollowSymlinks,
		CacheBytes:     int64(cfg.StaticCache),
		Refused: func(r *http.Request, why error) {
			if errors.Is(why, static.ErrNoDescriptor) {
				if ok, missed := shortOfFiles.Allow(); ok {
					staticLog.Warn().Err(why).Int64("times_since_last_line", missed).
						Msg("static file refused with 503: the descriptors for files requests hold are all in use")
				}
				return
			}
			staticLog.Debug().Err(why).Str("path", r.URL.Path).Str("remote", r.RemoteAddr).Msg("static path refused")
		},
		Files: files,
	}
	if onDone != nil {
		opts.OnServed = func(r *http.Request, start time.Time, status int, bytes int64) {
			onDone(&proxy.Record{Request: r, Start: start, Duration: time.Since(start), Status: status, BytesOut: bytes, Worker: -1})
		}
	}
	sh, err := static.New(dirs, opts, app)
	if err != nil {
		return nil, nil, err
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herd_static_kept_files", Help: "Small --static files kept in memory (--static-cache)."},
			func() float64 { files, _ := sh.Kept(); return float64(files) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herd_static_kept_bytes", Help: "Bytes of the --static files kept in memory (--static-cache)."},
			func() float64 { _, bytes := sh.Kept(); return float64(bytes) }))
	for _, d := range dirs {
		staticLog.Info().Str("prefix", d.Prefix).Str("dir", d.Path).Msg("serving static files")
	}
	return sh, sh.Close, nil
}
