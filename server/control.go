package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/herd-server/herd/admin/control"
	"github.com/herd-server/herd/config"
)

// masterControl is the master's end of `herd status`, `herd reload` and `herd stop`: the
// control socket and the registry entry that lets those commands find it.
type masterControl struct {
	srv      *control.Server
	registry string // the registry file, removed at Close
}

// startControl opens the control socket (--control-socket, else control.sock in the
// runtime directory), registers the master, and serves status (and its alias stats, which
// herd top asks for), reload (through the server's one reload door) and stop. signals is
// the master's signal channel: stop is a TERM (or INT) delivered through it, so a stop by
// socket and one by kill take the same path.
func startControl(cfg *config.Config, runDir string, s *Server, signals chan<- os.Signal, httpAddrs []string, log zerolog.Logger) (*masterControl, error) {
	path := cfg.ControlSocket
	if path == "" {
		path = filepath.Join(runDir, "control.sock")
	}
	srv, err := control.Listen(path, log)
	if err != nil {
		return nil, err
	}
	started := time.Now()
	status := func(context.Context, json.RawMessage) (any, error) {
		return s.metrics.Stats(time.Now(), s.info), nil
	}
	srv.Handle("status", status)
	srv.Handle("stats", status)
	srv.Handle("reload", func(ctx context.Context, _ json.RawMessage) (any, error) {
		// As SIGHUP does: the TLS certificate too. A certificate that does not load
		// keeps the old one and fails the command, but the workers reload regardless.
		select {
		case err := <-s.Reload():
			return nil, err
		case <-ctx.Done():
			return nil, errors.New("the master is stopping")
		}
	})
	srv.Handle("stop", func(_ context.Context, args json.RawMessage) (any, error) {
		req := struct {
			Graceful *bool `json:"graceful"`
		}{}
		if len(args) > 0 {
			if err := json.Unmarshal(args, &req); err != nil {
				return nil, fmt.Errorf("bad args: %w", err)
			}
		}
		sig := os.Signal(syscall.SIGTERM)
		if req.Graceful != nil && !*req.Graceful {
			sig = syscall.SIGINT
		}
		select {
		case signals <- sig:
			return nil, nil
		default:
			return nil, errors.New("the master is busy with other signals; try again")
		}
	})

	cwd, _ := os.Getwd()
	abs, _ := filepath.Abs(path)
	reg, err := control.Register(control.Entry{
		Pid: os.Getpid(), Socket: abs, App: cfg.App, HTTP: httpAddrs, Dir: cwd, Started: started,
	})
	if err != nil {
		// The socket still works for whoever knows its path.
		log.Warn().Err(err).Msg("cannot register in the master registry: herd status needs --control-socket")
	}
	return &masterControl{srv: srv, registry: reg}, nil
}

// Handle adds a control command (observability's stats, say): see package control.
func (m *masterControl) Handle(cmd string, h control.HandlerFunc) { m.srv.Handle(cmd, h) }

// Path is the control socket's path.
func (m *masterControl) Path() string { return m.srv.Path() }

// Close stops serving and removes the socket and the registry entry.
func (m *masterControl) Close() {
	_ = m.srv.Close()
	if m.registry != "" {
		_ = os.Remove(m.registry)
	}
}
