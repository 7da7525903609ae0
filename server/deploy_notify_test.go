package server

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/herd-server/herd/config"
	"github.com/herd-server/herd/internal/sdnotify"
	"github.com/herd-server/herd/supervisor"
	"github.com/herd-server/herd/supervisor/spawn"
)

// TestDeploymentNotifiesAroundReload drives the deployment's observer side as the
// supervisor does during a reload, and reads what a real notify socket receives.
func TestDeploymentNotifiesAroundReload(t *testing.T) {
	path, msgs := notifySocket(t)
	t.Setenv(sdnotify.EnvSocket, path)
	cfg := config.Defaults()
	cfg.Workers = 2
	d := newDeployment(&cfg, zerolog.Nop())
	defer d.close()

	gen1 := []supervisor.WorkerInfo{{ID: 1, Generation: 1}, {ID: 2, Generation: 1}}
	for _, w := range gen1 {
		d.WorkerStarted(w)
		d.WorkerReady(w, time.Millisecond)
	}
	d.serving()
	if m := waitNotify(t, msgs, "READY", 5*time.Second); m["STATUS"] != "serving: 2 workers ready" {
		t.Errorf("READY: %v", m)
	}
	// A crashed worker replaced in the same generation is no reload.
	d.WorkerExited(gen1[0], spawn.ExitStatus{Code: 1}, supervisor.CauseCrash)
	d.WorkerStarted(supervisor.WorkerInfo{ID: 3, Generation: 1})

	d.WorkerStarted(supervisor.WorkerInfo{ID: 4, Generation: 2})
	m := waitNotify(t, msgs, "RELOADING", 5*time.Second)
	usec, err := strconv.ParseUint(m["MONOTONIC_USEC"], 10, 64)
	if m["RELOADING"] != "1" || err != nil || usec == 0 || !strings.Contains(m["STATUS"], "reloading to generation 2") {
		t.Errorf("RELOADING: %v", m)
	}
	d.WorkerStarted(supervisor.WorkerInfo{ID: 5, Generation: 2}) // the same reload
	d.Reloaded(2, nil)
	for {
		m := waitNotify(t, msgs, "STATUS", 5*time.Second)
		if _, again := m["RELOADING"]; again {
			t.Errorf("a second RELOADING for the same reload: %v", m)
		}
		if _, ok := m["READY"]; ok {
			if !strings.Contains(m["STATUS"], "serving generation 2") {
				t.Errorf("READY after the reload: %v", m)
			}
			return
		}
	}
}
