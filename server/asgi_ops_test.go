package server

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/herd-server/herd/internal/herdtest"
)

// Everything else works for ASGI as for WSGI: graceful reloads under load, development
// mode and its error page, recycling, metrics and status.

// writeASGIApp writes a one-route ASGI app answering greeting (or broken source) to dir.
func writeASGIApp(t *testing.T, dir, greeting string) {
	t.Helper()
	src := `async def app(scope, receive, send):
    if scope['type'] != 'http':
        return
    await send({'type': 'http.response.start', 'status': 200, 'headers': [(b'content-type', b'text/plain')]})
    await send({'type': 'http.response.body', 'body': b'` + greeting + `'})
`
	if err := os.WriteFile(filepath.Join(dir, "app.py"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestASGIReloadUnderLoad(t *testing.T) {
	h := startASGI(t, 2)
	load := herdtest.StartLoad(h.URL+"/slow?s=0.05", 16, nil)
	for i := range 3 {
		from := len(h.Events())
		h.Signal(syscall.SIGHUP)
		if _, _, ok := h.WaitEvent(from, 30*time.Second, herdtest.IsMsg("reload done")); !ok {
			t.Fatalf("reload %d did not finish", i+1)
		}
	}
	res := load.Stop()
	if res.Failed > 0 || res.Sent < 50 {
		t.Fatalf("%d of %d requests failed over 3 reloads: %v", res.Failed, res.Sent, res.Failures)
	}
	t.Logf("%d requests over 3 reloads, none failed", res.Sent)
}

func TestASGIDevErrorPage(t *testing.T) {
	dir := t.TempDir()
	writeASGIApp(t, dir, "one")
	h := herdtest.Start(t, herdtest.Options{Command: "dev", Dir: dir, Args: []string{"app:app"}})
	h.WaitReady(1, 20*time.Second)
	c := herdtest.Client()
	if _, body := get(t, c, h.URL+"/"); body != "one" {
		t.Fatalf("got %q", body)
	}
	from := len(h.Events())
	if err := os.WriteFile(filepath.Join(dir, "app.py"), []byte("async def app(scope, receive, send:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := h.WaitEvent(from, 20*time.Second, isReloadFailedEvent); !ok {
		t.Fatal("no failed reload after saving a SyntaxError")
	}
	status, body := get(t, c, h.URL+"/")
	if status != 500 || !strings.Contains(body, "SyntaxError") {
		t.Fatalf("want the error page, got %d %q", status, body[:min(len(body), 200)])
	}
	writeASGIApp(t, dir, "two")
	waitForBody(t, c, h.URL+"/", "two", 20*time.Second, true)
}

func TestASGIMaxRequests(t *testing.T) {
	h := startASGI(t, 1, "--max-requests", "10")
	c := herdtest.Client()
	pids := map[string]bool{}
	herdtest.Eventually(t, 30*time.Second, "three processes served in turn", func() bool {
		status, pid := get(t, c, h.URL+"/pid")
		if status != 200 {
			t.Fatalf("status %d", status)
		}
		pids[pid] = true
		return len(pids) >= 3
	})
	if n := h.Count(func(e herdtest.Event) bool { return strings.Contains(e.Msg(), "--max-requests") }); n < 2 {
		t.Fatalf("%d recycling log lines", n)
	}
}

// TestASGIMetricsAndStatus: open WebSockets and their messages in /metrics and /stats, and
// each worker's slots in the status.
func TestASGIMetricsAndStatus(t *testing.T) {
	dir := filepath.Join(herdtest.RepoRoot(t), "scripts", "testapps")
	h := herdtest.Start(t, herdtest.Options{Dir: dir, Admin: true, Args: []string{"asgiapp:app", "-w", "2", "--worker-connections", "64"}})
	h.WaitReady(2, 20*time.Second)
	for range 3 {
		ws, _ := dialWS(t, "ws://"+h.Addr+"/ws", nil)
		_ = ws.WriteMessage(websocket.TextMessage, []byte("m"))
		if _, _, err := ws.ReadMessage(); err != nil {
			t.Fatal(err)
		}
	}
	c := herdtest.Client()
	_, metrics := get(t, c, h.AdminURL+"/metrics")
	for _, want := range []string{"herd_websockets_open 3", "herd_websockets_total 3", `herd_websocket_messages_total{direction="in"} 3`, `herd_websocket_messages_total{direction="out"} 3`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	_, stats := get(t, c, h.AdminURL+"/stats")
	var st struct {
		WebSockets struct{ Open int } `json:"websockets"`
		Workers    []struct {
			Slots    int    `json:"slots"`
			Link     string `json:"link"`
			InFlight int    `json:"in_flight"`
		} `json:"workers"`
	}
	if err := json.Unmarshal([]byte(stats), &st); err != nil {
		t.Fatal(err)
	}
	busy := 0
	for _, w := range st.Workers {
		if w.Slots != 64 || w.Link != "framed" {
			t.Errorf("worker %+v: want 64 framed slots", w)
		}
		busy += w.InFlight
	}
	if st.WebSockets.Open != 3 || busy != 3 {
		t.Errorf("stats: %d open sockets, %d slots busy: want 3 and 3", st.WebSockets.Open, busy)
	}
	res := herdtest.Run(t, dir, nil, "status", "--control-socket", h.ControlSocket())
	if !strings.Contains(res.Stdout, "/64") || !strings.Contains(res.Stdout, "WebSockets: 3 open") {
		t.Errorf("herd status:\n%s", res.Stdout)
	}
}
