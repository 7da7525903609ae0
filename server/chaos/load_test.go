package chaos

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// appSource is the app under chaos. Every answer carries X-Worker-Pid, and every path ends
// in the client's request id (/hello/17), so that the access log ties each request, failed
// or not, to the worker that had it.
const appSource = `
import os, time

PID = str(os.getpid())
HELLO = b"hello\n"
LEAKED = []


def app(environ, start_response):
    parts = environ.get("PATH_INFO", "").split("/")
    kind = parts[1] if len(parts) > 1 else ""
    q = dict(p.split("=", 1) for p in environ.get("QUERY_STRING", "").split("&") if "=" in p)
    if kind == "hello":
        return answer(start_response, HELLO)
    if kind == "slow":
        time.sleep(float(q.get("s", "0.05")))
        return answer(start_response, b"slow\n")
    if kind == "large":
        return answer(start_response, b"L" * int(q.get("n", "1048576")))
    if kind == "post":
        return answer(start_response, environ["wsgi.input"].read())
    if kind == "leak":
        # Written, so that the pages are resident: --reload-on-rss reads RSS.
        LEAKED.append(b"x" * (int(q.get("mib", "4")) << 20))
        return answer(start_response, b"leaked %d MiB\n" % (len(LEAKED) * int(q.get("mib", "4"))))
    if kind == "exit":
        # Part of a body, then the process ends mid-response: with a Content-Length that
        # promises more, or streamed (chunked) when stream=1.
        headers = [("Content-Type", "text/plain"), ("X-Worker-Pid", PID)]
        if q.get("stream") != "1":
            headers.append(("Content-Length", "100000"))
        start_response("200 OK", headers)
        return exit_after_part()
    return answer(start_response, b"no such route\n", "404 Not Found")


def exit_after_part():
    yield b"part of the body\n" * 64
    os._exit(7)


def answer(start_response, body, status="200 OK"):
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
                            ("X-Worker-Pid", PID)])
    return [body]
`

// writeApp puts the app in a fresh directory and returns it.
func writeApp(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "chaosapp.py"), []byte(appSource), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// kind is one shape of request the load sends.
type kind struct {
	name  string
	query string
	body  []byte // POST when set
	want  func(body []byte) bool
}

var (
	postBody  = randomBytes(64 << 10)
	largeSize = 1 << 20

	kindHello = kind{name: "hello", want: func(b []byte) bool { return string(b) == "hello\n" }}
	kindSlow  = kind{name: "slow", query: "s=0.05", want: func(b []byte) bool { return string(b) == "slow\n" }}
	kindLarge = kind{name: "large", query: "n=" + strconv.Itoa(largeSize), want: func(b []byte) bool {
		return len(b) == largeSize && bytes.Count(b, []byte("L")) == largeSize
	}}
	kindPost = kind{name: "post", body: postBody, want: func(b []byte) bool { return bytes.Equal(b, postBody) }}
	kindLeak = kind{name: "leak", query: "mib=4", want: func(b []byte) bool { return bytes.HasPrefix(b, []byte("leaked ")) }}
)

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// outcome is one request the load sent and what became of it.
type outcome struct {
	id         int64
	kind       string
	path       string
	query      string
	start, end time.Time
	status     int    // 0 when no answer came
	failure    string // "" when the answer was the right one
	pid        int    // X-Worker-Pid of the answer, 0 without one
}

// load is client traffic: each client sends requests one after another, without pause,
// cycling through its kinds, until stop. Every request is recorded.
type load struct {
	base   string
	client *http.Client
	nextID atomic.Int64
	stop   chan struct{}
	wg     sync.WaitGroup

	mu       sync.Mutex
	outcomes []outcome
	keep     bool // keep every outcome (chaos), or only count them and keep failures (soak)
	sent     int
	failed   int
}

// startLoad starts one client goroutine per entry of mixes; each cycles through its kinds.
// pause is a wait between one client's requests (0: none).
func startLoad(base string, keepAll bool, pause time.Duration, mixes ...[]kind) *load {
	l := &load{base: base, stop: make(chan struct{}), keep: keepAll,
		client: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	for _, mix := range mixes {
		l.wg.Add(1)
		go l.client1(mix, pause)
	}
	return l
}

func (l *load) client1(mix []kind, pause time.Duration) {
	defer l.wg.Done()
	for i := 0; ; i++ {
		select {
		case <-l.stop:
			return
		default:
		}
		l.record(l.send(mix[i%len(mix)]))
		if pause > 0 {
			select {
			case <-l.stop:
				return
			case <-time.After(pause):
			}
		}
	}
}

// send makes one request of kind k and judges its answer.
func (l *load) send(k kind) outcome {
	id := l.nextID.Add(1)
	o := outcome{id: id, kind: k.name, path: fmt.Sprintf("/%s/%d", k.name, id), query: k.query, start: time.Now()}
	url := l.base + o.path
	if k.query != "" {
		url += "?" + k.query
	}
	var resp *http.Response
	var err error
	if k.body != nil {
		resp, err = l.client.Post(url, "application/octet-stream", bytes.NewReader(k.body))
	} else {
		resp, err = l.client.Get(url)
	}
	if err != nil {
		o.failure = err.Error()
		o.end = time.Now()
		return o
	}
	defer resp.Body.Close()
	o.status = resp.StatusCode
	o.pid, _ = strconv.Atoi(resp.Header.Get("X-Worker-Pid"))
	body, err := io.ReadAll(resp.Body)
	o.end = time.Now()
	switch {
	case err != nil:
		o.failure = fmt.Sprintf("status %d, then reading the body: %v", resp.StatusCode, err)
	case resp.StatusCode != 200:
		o.failure = fmt.Sprintf("status %d: %.80q", resp.StatusCode, body)
	case !k.want(body):
		o.failure = fmt.Sprintf("status 200 with a wrong body (%d bytes): %.40q", len(body), body)
	}
	return o
}

func (l *load) record(o outcome) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent++
	if o.failure != "" {
		l.failed++
	}
	if l.keep || o.failure != "" {
		l.outcomes = append(l.outcomes, o)
	}
}

// counts is how many requests were sent and failed so far.
func (l *load) counts() (sent, failed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sent, l.failed
}

// finish stops the load, waits for the requests in flight, and returns what was recorded.
func (l *load) finish() []outcome {
	close(l.stop)
	l.wg.Wait()
	l.client.CloseIdleConnections()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.outcomes
}
