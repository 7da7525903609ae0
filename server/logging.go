package server

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/herd-server/herd/config"
	"github.com/herd-server/herd/internal/logfile"
	"github.com/herd-server/herd/proxy"
	"github.com/herd-server/herd/proxy/accesslog"
)

// NewLogger is the root logger: readable console lines on a terminal, JSON otherwise. It
// writes to out, or to the --log-file; that file stays open as long as the process lives.
func NewLogger(cfg *config.Config, out *os.File) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(cfg.LogLevel)
	if err != nil {
		return zerolog.Logger{}, fmt.Errorf("log-level: %w", err)
	}
	var w io.Writer = out
	fd := out.Fd()
	if cfg.LogFile != "" && cfg.LogFile != "-" {
		// A logfile.File, so that SIGUSR1 reopens it after logrotate moved it.
		f, err := logfile.Open(cfg.LogFile)
		if err != nil {
			return zerolog.Logger{}, fmt.Errorf("log-file: %w", err)
		}
		w, fd = f, f.Fd()
	}
	console := cfg.LogFormat == "console" || cfg.LogFormat == "auto" && isatty.IsTerminal(fd)
	if console {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"}
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), nil
}

// newAccessLogger returns the access log's OnDone hook, nil when access logging is off.
// "-" with the json format puts access events in the main log (component=access); "-" with
// any other format writes plain lines to stdout, as gunicorn's --access-logfile - does. A
// file is a logfile.File: it stays open while the process lives and SIGUSR1 reopens it.
func newAccessLogger(cfg *config.Config, main zerolog.Logger) (func(*proxy.Record), error) {
	if cfg.AccessLog == "off" || cfg.AccessLog == "none" || cfg.AccessLog == "" {
		return nil, nil
	}
	format, err := accesslog.Parse(cfg.AccessLogFormat)
	if err != nil {
		return nil, err
	}
	if cfg.AccessLog == "-" {
		if cfg.AccessLogFormat == "json" {
			return proxy.LogAccess(main.With().Str("component", "access").Logger()), nil
		}
		return accesslog.New(accesslog.Locked(os.Stdout), format).OnDone, nil
	}
	f, err := logfile.Open(cfg.AccessLog)
	if err != nil {
		return nil, fmt.Errorf("access-log: %w", err)
	}
	return accesslog.New(f, format).OnDone, nil
}

// reopenLogs reopens the --log-file and --access-log files (SIGUSR1), so that logrotate
// can move them away without copytruncate.
func reopenLogs(log zerolog.Logger) {
	paths, err := logfile.ReopenAll()
	if err != nil {
		log.Error().Err(err).Strs("reopened", paths).Msg("SIGUSR1: reopening log files failed")
		return
	}
	log.Info().Strs("files", paths).Msg("SIGUSR1: log files reopened")
}
