package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/herd-server/herd/internal/herdtest"
)

// Real ASGI apps from PyPI (the venv of today's peers, make venv): FastAPI, Starlette and
// Django 6.1, through real HTTP and WebSocket clients.

func startVenvApp(t *testing.T, app string, workers int, env []string, args ...string) *herdtest.Instance {
	t.Helper()
	venv := herdtest.VenvDir(t)
	h := herdtest.Start(t, herdtest.Options{Dir: testAppsDir(t), Env: env,
		Args: append([]string{app, "--workers", fmt.Sprint(workers), "--venv", venv}, args...)})
	h.WaitReady(workers, 60*time.Second)
	return h
}

func getJSON(t *testing.T, url string, into any) int {
	t.Helper()
	resp, err := herdtest.Client().Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, into); err != nil {
		t.Fatalf("%s: %d %q: %v", url, resp.StatusCode, b, err)
	}
	return resp.StatusCode
}

func TestFastAPI(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "shutdown")
	h := startVenvApp(t, "fastapiapp:app", 2, []string{"HERD_TEST_SHUTDOWN_FILE=" + marker})
	var msg map[string]any
	if status := getJSON(t, h.URL+"/json", &msg); status != 200 || msg["message"] != "Hello, World!" {
		t.Fatalf("json: %d %v", status, msg)
	}
	resp, err := herdtest.Client().Post(h.URL+"/items", "application/json", strings.NewReader(`{"name":"x","price":2.5}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != `{"name":"x","price":2.5,"total":5.0}` {
		t.Fatalf("items: %d %s", resp.StatusCode, b)
	}
	resp, _ = herdtest.Client().Post(h.URL+"/items", "application/json", strings.NewReader(`{"name":1}`))
	if resp.StatusCode != 422 {
		t.Fatalf("validation: %d", resp.StatusCode)
	}
	resp.Body.Close()
	var thread map[string]string
	if getJSON(t, h.URL+"/sync", &thread); !strings.Contains(thread["thread"], "ThreadPool") && !strings.Contains(thread["thread"], "AnyIO") {
		t.Errorf("a sync route ran in %q, not the thread pool", thread["thread"])
	}
	var state map[string]string
	if getJSON(t, h.URL+"/state", &state); state["db"] != "connected" {
		t.Errorf("lifespan state %v", state)
	}
	if status, body := get(t, herdtest.Client(), h.URL+"/stream"); status != 200 || body != "event 0\nevent 1\nevent 2\nevent 3\nevent 4\n" {
		t.Errorf("stream: %d %q", status, body)
	}
	c, _ := dialWS(t, "ws://"+h.Addr+"/ws", nil)
	_ = c.WriteMessage(websocket.TextMessage, []byte("hi"))
	if _, m, err := c.ReadMessage(); err != nil || string(m) != `{"echo":"hi"}` {
		t.Fatalf("ws: %q %v", m, err)
	}
	c.Close()
	h.Signal(syscall.SIGTERM)
	if code := h.Wait(30 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if b, _ := os.ReadFile(marker); strings.Count(string(b), "fastapi shutdown") != 2 {
		t.Errorf("lifespan shutdown ran %q", b)
	}
}

func TestStarlette(t *testing.T) {
	h := startVenvApp(t, "starletteapp:app", 1, nil, "--mount", "/app")
	c := herdtest.Client()
	if status, body := get(t, c, h.URL+"/app/"); status != 200 || body != "Hello from Starlette\n" {
		t.Fatalf("home: %d %q", status, body)
	}
	var page map[string]string
	if getJSON(t, h.URL+"/app/sub/page", &page); page["path"] != "/app/sub/page" || page["root_path"] != "/app/sub" {
		t.Errorf("mounted route: %v", page)
	}
	resp, err := c.Post(h.URL+"/app/upload", "application/octet-stream", strings.NewReader(strings.Repeat("x", 3<<20)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"size":3145728`) {
		t.Fatalf("upload: %s", b)
	}
	get(t, c, h.URL+"/app/later")
	herdtest.Eventually(t, 5*time.Second, "the background task ran", func() bool {
		var n map[string]int
		getJSON(t, h.URL+"/app/count", &n)
		return n["background_done"] == 1
	})
	ws, _ := dialWS(t, "ws://"+h.Addr+"/app/ws", nil)
	_ = ws.WriteMessage(websocket.BinaryMessage, []byte("abc"))
	if _, m, err := ws.ReadMessage(); err != nil || string(m) != "cba" {
		t.Fatalf("ws: %q %v", m, err)
	}
}

func TestDjangoASGI(t *testing.T) {
	h := startVenvApp(t, "djangoasgi:application", 1, nil, "--worker-connections", "50")
	var v map[string]any
	if getJSON(t, h.URL+"/async?q=x", &v); v["kind"] != "async" || v["query"] != "x" {
		t.Fatalf("async view: %v", v)
	}
	if getJSON(t, h.URL+"/sync", &v); v["kind"] != "sync" || v["main"] != false {
		t.Fatalf("sync view: %v (it must run in Django's thread pool, not the loop's thread)", v)
	}
	c := herdtest.Client()
	if status, body := get(t, c, h.URL+"/orm"); status != 200 || body == "0" {
		t.Fatalf("orm: %d %q", status, body)
	}
	if status, body := get(t, c, h.URL+"/stream"); status != 200 || body != "part 0\npart 1\npart 2\n" {
		t.Fatalf("stream: %d %q", status, body)
	}
	resp, _ := c.Post(h.URL+"/post", "text/plain", strings.NewReader(strings.Repeat("y", 100000)))
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(b), "100000 ") {
		t.Fatalf("post: %q", b)
	}
	// One worker, 40 async views of 1 s at once: they overlap.
	start := time.Now()
	var wg sync.WaitGroup
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if status, _ := get(t, &http.Client{}, h.URL+"/slow?s=1"); status != 200 {
				t.Errorf("slow: %d", status)
			}
		}()
	}
	wg.Wait()
	if took := time.Since(start); took > 4*time.Second {
		t.Fatalf("40 async views of 1 s on one worker took %s", took)
	}
}
