package server

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// startASGI runs herd on scripts/testapps/asgiapp.py (a plain ASGI 3 app, no framework)
// with args, and waits for its workers.
func startASGI(t *testing.T, workers int, args ...string) *herdtest.Instance {
	t.Helper()
	dir := filepath.Join(herdtest.RepoRoot(t), "scripts", "testapps")
	h := herdtest.Start(t, herdtest.Options{Dir: dir, Args: append([]string{"asgiapp:app", "--workers", fmt.Sprint(workers)}, args...)})
	h.WaitReady(workers, 20*time.Second)
	return h
}

func TestASGIHTTP(t *testing.T) {
	h := startASGI(t, 2)
	c := herdtest.Client()

	t.Run("hello, and the worker said it speaks frames", func(t *testing.T) {
		status, body := get(t, c, h.URL+"/")
		if status != 200 || body != "Hello, ASGI!\n" {
			t.Fatalf("got %d %q", status, body)
		}
		if _, _, ok := h.WaitEvent(0, time.Second, func(e herdtest.Event) bool { return e.Msg() == "worker ready" }); !ok {
			t.Fatal("no worker ready")
		}
	})

	t.Run("scope", func(t *testing.T) {
		req, _ := http.NewRequest("GET", h.URL+"/scope?x=caf%C3%A9", nil)
		req.Header.Set("X-Custom", "v1")
		req.Header.Add("Cookie", "a=1")
		req.Header.Add("Cookie", "b=2")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var scope struct {
			Type, Method, Path, Scheme, HTTPVersion string
			QueryString                             string `json:"query_string"`
			Headers                                 [][2]string
			Client                                  []any
			State                                   map[string]string
			Extensions                              []string
		}
		if err := json.NewDecoder(resp.Body).Decode(&scope); err != nil {
			t.Fatal(err)
		}
		headers := map[string]string{}
		for _, kv := range scope.Headers {
			headers[kv[0]] = kv[1]
		}
		if scope.Type != "http" || scope.Method != "GET" || scope.Path != "/scope" || scope.QueryString != "x=caf%C3%A9" ||
			headers["x-custom"] != "v1" || headers["cookie"] != "a=1; b=2" || scope.State["started"] != "yes" ||
			len(scope.Client) != 2 || len(scope.Extensions) != 1 {
			t.Fatalf("scope %+v", scope)
		}
	})

	t.Run("10 MiB echoed, as http.request chunks", func(t *testing.T) {
		payload := make([]byte, 10<<20)
		_, _ = rand.Read(payload)
		resp, err := c.Post(h.URL+"/echo", "application/octet-stream", bytes.NewReader(payload))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !bytes.Equal(got, payload) || resp.Header.Get("X-Chunks") == "1" {
			t.Fatalf("status %d, %d bytes back, chunks %s", resp.StatusCode, len(got), resp.Header.Get("X-Chunks"))
		}
	})

	t.Run("streamed response arrives part by part", func(t *testing.T) {
		resp, err := c.Get(h.URL + "/stream?n=5")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || resp.TransferEncoding == nil || !strings.HasPrefix(string(body), "chunk 0\nchunk 1\n") || !strings.HasSuffix(string(body), "chunk 4\n") {
			t.Fatalf("status %d, te %v, body %q", resp.StatusCode, resp.TransferEncoding, body)
		}
	})

	t.Run("a large response flows through the window", func(t *testing.T) {
		status, body := get(t, c, h.URL+"/big?n=20000000")
		if status != 200 || len(body) != 20000000 {
			t.Fatalf("got %d, %d bytes", status, len(body))
		}
	})

	t.Run("pathsend served by the master", func(t *testing.T) {
		status, body := get(t, c, h.URL+"/pathsend")
		want, _ := os.ReadFile(filepath.Join(herdtest.RepoRoot(t), "scripts", "testapps", "asgiapp.py"))
		if status != 200 || body != string(want) {
			t.Fatalf("got %d, %d bytes", status, len(body))
		}
	})

	t.Run("app errors", func(t *testing.T) {
		for path, want := range map[string]int{"/error": 500, "/noresponse": 500} {
			if status, _ := get(t, c, h.URL+path); status != want {
				t.Errorf("%s: got %d, want %d", path, status, want)
			}
		}
		resp, err := c.Get(h.URL + "/error-after")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err == nil {
			t.Fatal("a response cut by the app's error read as whole")
		}
	})
}

// TestASGIConcurrency: one worker serves many requests at once, up to its
// --worker-connections, and the master dispatches by its free slots.
func TestASGIConcurrency(t *testing.T) {
	h := startASGI(t, 1, "--worker-connections", "200")
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 300}}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get(h.URL + "/slow?s=1")
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				errs <- fmt.Errorf("status %d", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Fatalf("200 requests of 1 s on one worker took %s", took)
	}
}

// TestASGIDisconnect: a client that leaves is heard by the app as http.disconnect.
func TestASGIDisconnect(t *testing.T) {
	h := startASGI(t, 1)
	conn, err := net.Dial("tcp", h.Addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /wait-disconnect HTTP/1.1\r\nHost: x\r\n\r\n")
	h.WaitServing("/wait-disconnect", 10*time.Second)
	conn.Close()
	c := herdtest.Client()
	herdtest.Eventually(t, 5*time.Second, "the app hears http.disconnect", func() bool {
		_, body := get(t, c, h.URL+"/disconnects")
		return body == "1"
	})
}

// TestASGITimeout: a request past --timeout gets 504 and its task's stack in the log; the
// worker goes on serving. One that blocks the event loop gets the worker killed.
func TestASGITimeout(t *testing.T) {
	h := startASGI(t, 1, "--timeout", "1s")
	c := herdtest.Client()
	if status, _ := get(t, c, h.URL+"/slow?s=30"); status != 504 {
		t.Fatalf("slow: got %d, want 504", status)
	}
	if _, _, ok := h.WaitEvent(0, 5*time.Second, func(e herdtest.Event) bool {
		return strings.Contains(e.Msg(), "overran --timeout") || strings.Contains(e.Msg(), "asyncio.sleep")
	}); !ok {
		t.Fatal("no task stack in the log")
	}
	if status, body := get(t, c, h.URL+"/"); status != 200 {
		t.Fatalf("after the timeout: %d %q", status, body)
	}
	if status, _ := get(t, c, h.URL+"/block?s=30"); status != 504 {
		t.Fatalf("block: got %d, want 504", status)
	}
	if _, _, ok := h.WaitEvent(0, 10*time.Second, herdtest.IsMsg("request timed out: the worker's stacks follow, then it is killed and replaced")); !ok {
		t.Fatal("the blocked worker was not killed")
	}
	h.WaitReady(2, 20*time.Second)
	if status, _ := get(t, c, h.URL+"/"); status != 200 {
		t.Fatalf("after the kill: %d", status)
	}
}

// TestASGIWorkerDeath: a worker's death fails its streams at once with 502, and the next
// requests go to its replacement.
func TestASGIWorkerDeath(t *testing.T) {
	h := startASGI(t, 1)
	c := herdtest.Client()
	_, pidText := get(t, c, h.URL+"/pid")
	done := make(chan int, 1)
	go func() {
		resp, err := c.Get(h.URL + "/slow?s=30")
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	h.WaitServing("/slow?s=30", 10*time.Second)
	var pid int
	fmt.Sscan(pidText, &pid)
	start := time.Now()
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if status := <-done; status != 502 {
		t.Fatalf("got %d, want 502", status)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("the 502 took %s", took)
	}
	h.WaitReady(2, 20*time.Second)
	if status, _ := get(t, c, h.URL+"/"); status != 200 {
		t.Fatalf("after the death: %d", status)
	}
}

// TestASGILifespan: startup runs before ready and its failure stops herd with exit 3;
// shutdown runs on stop.
func TestASGILifespan(t *testing.T) {
	dir := filepath.Join(herdtest.RepoRoot(t), "scripts", "testapps")
	t.Run("startup failure is a boot error", func(t *testing.T) {
		h := herdtest.Start(t, herdtest.Options{Dir: dir, Args: []string{"asgiapp:app", "-w", "1"}, Env: []string{"HERD_TEST_LIFESPAN_FAIL=1"}})
		if code := h.Wait(20 * time.Second); code != 3 {
			t.Fatalf("exit %d, want 3", code)
		}
		if !strings.Contains(h.Output(), "the database is down") {
			t.Fatal("the startup failure's message is not in the log")
		}
	})
	t.Run("shutdown runs on stop", func(t *testing.T) {
		marker := filepath.Join(t.TempDir(), "shutdown")
		h := herdtest.Start(t, herdtest.Options{Dir: dir, Args: []string{"asgiapp:app", "-w", "2"}, Env: []string{"HERD_TEST_SHUTDOWN_FILE=" + marker}})
		h.WaitReady(2, 20*time.Second)
		h.Signal(syscall.SIGTERM)
		if code := h.Wait(20 * time.Second); code != 0 {
			t.Fatalf("exit %d", code)
		}
		b, _ := os.ReadFile(marker)
		if strings.Count(string(b), "shutdown") != 2 {
			t.Fatalf("shutdown ran %q", b)
		}
	})
}

// TestASGIWorkerClass: gunicorn's and uvicorn's class names select the asgi worker; a WSGI
// app refused by it says why.
func TestASGIWorkerClass(t *testing.T) {
	h := startASGI(t, 1, "-k", "uvicorn.workers.UvicornWorker")
	if status, body := get(t, herdtest.Client(), h.URL+"/"); status != 200 || body != "Hello, ASGI!\n" {
		t.Fatalf("got %d %q", status, body)
	}
	dir := filepath.Join(herdtest.RepoRoot(t), "scripts", "testapps")
	w := herdtest.Start(t, herdtest.Options{Dir: dir, Args: []string{"hello:app", "-k", "asgi", "-w", "1"}})
	if code := w.Wait(20 * time.Second); code != 3 || !strings.Contains(w.Output(), "a WSGI app, not ASGI") {
		t.Fatalf("exit %d", code)
	}
}

// TestASGIOverHTTP2: the same app over cleartext HTTP/2 (--h2c): http_version "2", a
// streamed response and a body in chunks.
func TestASGIOverHTTP2(t *testing.T) {
	h := startASGI(t, 1, "--h2c")
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	c := &http.Client{Transport: &http.Transport{Protocols: &protocols}, Timeout: 20 * time.Second}
	resp, err := c.Get(h.URL + "/scope")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || !strings.Contains(string(body), `"http_version": "2"`) {
		t.Fatalf("proto %s, scope %s", resp.Proto, body)
	}
	payload := bytes.Repeat([]byte("h2"), 200000)
	resp, err = c.Post(h.URL+"/echo", "application/octet-stream", bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, payload) {
		t.Fatalf("echo over h2: %d bytes back of %d", len(got), len(payload))
	}
	resp, err = c.Get(h.URL + "/stream?n=3")
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != "chunk 0\nchunk 1\nchunk 2\n" {
		t.Fatalf("stream over h2: %q", got)
	}
}
