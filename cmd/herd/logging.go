package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/herd-server/herd/config"
)

// newLogger is the root logger: readable console lines on a terminal, JSON otherwise. It
// writes to out, or to the --log-file; that file stays open as long as the process lives.
func newLogger(cfg *config.Config, out *os.File) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(cfg.LogLevel)
	if err != nil {
		return zerolog.Logger{}, fmt.Errorf("log-level: %w", err)
	}
	if cfg.LogFile != "" && cfg.LogFile != "-" {
		f, err := openLogFile(cfg.LogFile)
		if err != nil {
			return zerolog.Logger{}, fmt.Errorf("log-file: %w", err)
		}
		out = f
	}
	var w io.Writer = out
	console := cfg.LogFormat == "console" || cfg.LogFormat == "auto" && isatty.IsTerminal(out.Fd())
	if console {
		w = zerolog.ConsoleWriter{Out: out, TimeFormat: "15:04:05.000"}
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), nil
}

// newAccessLogger returns nil when access logging is off. The file, if any, is the
// caller's to close.
func newAccessLogger(cfg *config.Config, main zerolog.Logger) (*zerolog.Logger, io.Closer, error) {
	switch cfg.AccessLog {
	case "off", "none", "":
		return nil, nil, nil
	case "-":
		l := main.With().Str("component", "access").Logger()
		return &l, nil, nil
	}
	f, err := os.OpenFile(cfg.AccessLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("access-log: %w", err)
	}
	l := zerolog.New(f).With().Timestamp().Logger()
	return &l, f, nil
}

// logWarnings logs what the configuration asked for and herd does not take, once, before
// anything starts.
func logWarnings(l *config.Loaded) error {
	if len(l.Warnings) == 0 {
		return nil
	}
	log, err := newLogger(&l.Config, os.Stderr)
	if err != nil {
		return err
	}
	for _, w := range l.Warnings {
		log.Warn().Str("config", l.File).Msg(w)
	}
	return nil
}

var (
	logFilesMu sync.Mutex
	logFiles   = map[string]*os.File{}
)

// openLogFile opens a log file for appending once per path, so that the loggers built for
// warnings and for the master share it.
func openLogFile(path string) (*os.File, error) {
	logFilesMu.Lock()
	defer logFilesMu.Unlock()
	if f, ok := logFiles[path]; ok {
		return f, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	logFiles[path] = f
	return f, nil
}
