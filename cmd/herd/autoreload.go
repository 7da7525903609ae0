package main

import (
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/herd-server/herd/config"
	"github.com/herd-server/herd/reload"
	"github.com/herd-server/herd/watch"
)

// touchPollInterval: --touch-reload is for deploys, where a second is quick enough, and
// polling one file works on every file system (network and container mounts included).
const touchPollInterval = time.Second

// newReloadLoop sets up --reload and --touch-reload. It returns a nil Loop when neither is
// on, and a State only in development mode (--reload), where it feeds the error page.
func newReloadLoop(cfg *config.Config, log zerolog.Logger, r reload.Reloader) (*reload.Loop, *reload.State, error) {
	loop := &reload.Loop{Reloader: r, Log: log}
	if cfg.Reload {
		roots, err := sourceRoots(cfg)
		if err != nil {
			return nil, nil, err
		}
		w, err := watch.New(watch.Options{Roots: roots, Engine: watch.Engine(cfg.ReloadEngine), Log: log})
		if err != nil {
			return nil, nil, fmt.Errorf("reload: %w", err)
		}
		loop.Sources = append(loop.Sources, reload.Source{Reason: "files changed", Watcher: w})
		loop.State = &reload.State{}
	}
	if cfg.TouchReload != "" {
		root, err := watch.File(cfg.TouchReload)
		if err != nil {
			closeSources(loop.Sources)
			return nil, nil, fmt.Errorf("touch-reload: %w", err)
		}
		w, err := watch.New(watch.Options{Roots: []watch.Root{root}, Engine: watch.Poll, PollInterval: touchPollInterval, Quiet: time.Millisecond, Log: log})
		if err != nil {
			closeSources(loop.Sources)
			return nil, nil, fmt.Errorf("touch-reload: %w", err)
		}
		loop.Sources = append(loop.Sources, reload.Source{Reason: "touch-reload", Watcher: w})
	}
	if len(loop.Sources) == 0 {
		return nil, nil, nil
	}
	return loop, loop.State, nil
}

// sourceRoots is what --reload watches: the .py files of the app's directory and of every
// --pythonpath, and whatever --reload-extra names.
func sourceRoots(cfg *config.Config) ([]watch.Root, error) {
	dirs := append([]string{cfg.Chdir}, cfg.PythonPath...)
	if dirs[0] == "" {
		dirs[0] = "."
	}
	var roots []watch.Root
	for _, d := range dirs {
		r, err := watch.PythonSource(d)
		if err != nil {
			return nil, fmt.Errorf("reload: %w", err)
		}
		roots = append(roots, r)
	}
	for _, spec := range cfg.ReloadExtra {
		r, err := watch.Extra(spec)
		if err != nil {
			return nil, fmt.Errorf("reload-extra: %w", err)
		}
		roots = append(roots, r)
	}
	return roots, nil
}

func closeSources(sources []reload.Source) {
	for _, s := range sources {
		_ = s.Watcher.Close()
	}
}
