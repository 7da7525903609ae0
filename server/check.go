package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/herd-server/herd/config"
	"github.com/herd-server/herd/supervisor"
	"github.com/herd-server/herd/supervisor/spawn"
	"github.com/rs/zerolog"
)

// CheckCertificate loads the --https certificate as serve does before it listens: the pair
// must load and match. Nothing to check without --https.
func CheckCertificate(cfg *config.Config, log zerolog.Logger) error {
	if len(cfg.HTTPS) == 0 {
		return nil
	}
	_, err := newCertStore(cfg.Cert, cfg.Key, log)
	return err
}

// ImportApp starts one worker the way serve does (same interpreter, environment, path and
// user) and waits for it to load the app or fail, then stops it. It returns the interpreter
// used.
func ImportApp(cfg *config.Config, log zerolog.Logger, cred *syscall.Credential) (string, error) {
	python, err := spawn.ResolvePython(cfg.Python)
	if err != nil {
		return "", err
	}
	cfg.Python = python
	runDir, err := os.MkdirTemp("", "herd-check-")
	if err != nil {
		return "", fmt.Errorf("create runtime directory: %w", err)
	}
	defer os.RemoveAll(runDir)
	worker, err := spawn.InstallWorker(runDir, log)
	if err != nil {
		return "", err
	}
	sup := supervisor.New(supervisor.Options{
		Workers:         1,
		Threads:         cfg.Threads,
		BootTimeout:     cfg.BootTimeout,
		GracefulTimeout: 5 * time.Second,
		RunDir:          runDir,
		Spawner:         newSpawner(cfg, worker.Script).WithCredential(cred),
		Log:             log, // the worker's output and traceback, as serve would show them
	}, supervisor.NewPool(0, time.Second))
	done := make(chan error, 1)
	go func() { done <- sup.Run(context.Background()) }()
	select {
	case <-sup.Ready():
		sup.Stop(false)
		return python, <-done
	case err := <-done:
		if err == nil {
			err = errors.New("the worker stopped before loading the app")
		}
		return python, err
	}
}
