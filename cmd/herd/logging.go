package main

import (
	"os"

	"github.com/herd-server/herd/config"
	"github.com/herd-server/herd/server"
)

// logWarnings logs what the configuration asked for and herd does not take, once, before
// anything starts.
func logWarnings(l *config.Loaded) error {
	if len(l.Warnings) == 0 {
		return nil
	}
	log, err := server.NewLogger(&l.Config, os.Stderr)
	if err != nil {
		return err
	}
	for _, w := range l.Warnings {
		log.Warn().Str("config", l.File).Msg(w)
	}
	return nil
}
