package server

import (
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/herd-server/herd/config"
	"github.com/herd-server/herd/supervisor/autoreload"
)

// touchPollInterval: --touch-reload is for deploys, where a second is quick enough, and
// polling one file works on every file system (network and container mounts included).
const touchPollInterval = time.Second

// newReloadLoop sets up --reload and --touch-autoreload. It returns a nil Loop when neither is
// on, and a State only in development mode (--reload), where it feeds the error page.
func newReloadLoop(cfg *config.Config, log zerolog.Logger, r autoreload.Reloader) (*autoreload.Loop, *autoreload.State, error) {
	loop := &autoreload.Loop{Reloader: r, Log: log}
	if cfg.Reload {
		roots, err := sourceRoots(cfg, log)
		if err != nil {
			return nil, nil, err
		}
		w, err := autoreload.NewWatcher(autoreload.WatchOptions{Roots: roots, Engine: autoreload.Engine(cfg.ReloadEngine), Log: log})
		if err != nil {
			return nil, nil, fmt.Errorf("reload: %w", err)
		}
		loop.Sources = append(loop.Sources, autoreload.Source{Reason: "files changed", Watcher: w})
		loop.State = &autoreload.State{}
	}
	if cfg.TouchReload != "" {
		root, err := autoreload.File(cfg.TouchReload)
		if err != nil {
			closeSources(loop.Sources)
			return nil, nil, fmt.Errorf("touch-reload: %w", err)
		}
		w, err := autoreload.NewWatcher(autoreload.WatchOptions{Roots: []autoreload.Root{root}, Engine: autoreload.Poll, PollInterval: touchPollInterval, Quiet: time.Millisecond, Log: log})
		if err != nil {
			closeSources(loop.Sources)
			return nil, nil, fmt.Errorf("touch-reload: %w", err)
		}
		loop.Sources = append(loop.Sources, autoreload.Source{Reason: "touch-reload", Watcher: w})
	}
	if len(loop.Sources) == 0 {
		return nil, nil, nil
	}
	return loop, loop.State, nil
}

// sourceRoots is what --reload watches: the .py files of the app's directory and of every
// --pythonpath, and whatever --reload-extra names.
func sourceRoots(cfg *config.Config, log zerolog.Logger) ([]autoreload.Root, error) {
	dirs := append([]string{cfg.Chdir}, cfg.PythonPath...)
	if dirs[0] == "" {
		dirs[0] = "."
	}
	var roots []autoreload.Root
	for _, d := range dirs {
		r, err := autoreload.PythonSource(d)
		if err != nil {
			return nil, fmt.Errorf("reload: %w", err)
		}
		roots = append(roots, r)
	}
	for _, spec := range cfg.ReloadExtra {
		r, err := autoreload.Extra(spec)
		if err != nil {
			return nil, fmt.Errorf("reload-extra: %w", err)
		}
		if r.Missing != "" {
			log.Warn().Str("reload_extra", spec).Str("missing", r.Missing).Str("watching", r.Dir).
				Msg("--reload-extra names a directory that does not exist yet: watching for it to appear")
		}
		roots = append(roots, r)
	}
	return roots, nil
}

func closeSources(sources []autoreload.Source) {
	for _, s := range sources {
		_ = s.Watcher.Close()
	}
}
