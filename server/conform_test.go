package server

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// testAppsDir is scripts/testapps, where the fixture apps live.
func testAppsDir(t *testing.T) string {
	return filepath.Join(herdtest.RepoRoot(t), "scripts", "testapps")
}

// rawResponse is one response read off a raw connection.
type rawResponse struct {
	status int
	header http.Header
	body   string
}

// rawExchange writes raw bytes to addr and reads every response until the server closes
// the connection or goes quiet; closed says whether the server closed it.
func rawExchange(t *testing.T, addr, raw string, want int) (resps []rawResponse, closed bool) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	for {
		// Long enough for a worker's answer on a busy machine; only reached when the
		// server neither answers nor closes, which the callers count as a failure.
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if len(resps) >= want {
			_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			var ne net.Error
			return resps, !(errors.As(err, &ne) && ne.Timeout())
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resps = append(resps, rawResponse{resp.StatusCode, resp.Header, string(b)})
	}
}

// TestHeadHygiene sends each malformed or over-limit request shape as raw bytes through the
// real server: each is refused with its status and a short body, and a request smuggled
// behind it never reaches the app.
func TestHeadHygiene(t *testing.T) {
	h := herdtest.Start(t, herdtest.Options{Dir: testAppsDir(t), Args: []string{"fixture:app", "--workers", "1",
		"--limit-request-line", "200", "--limit-request-fields", "10", "--limit-request-field-size", "300"}})
	h.WaitReady(1, 60*time.Second)

	smuggled := "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
	cases := []struct {
		name   string
		raw    string
		status int
	}{
		{"Content-Length with Transfer-Encoding", "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"differing Content-Length", "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc" + smuggled, 400},
		{"Content-Length list differing", "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\nabc" + smuggled, 400},
		{"Transfer-Encoding not chunked", "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n" + smuggled, 400},
		{"chunked twice", "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"Transfer-Encoding in HTTP/1.0", "POST /echo HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"unknown coding before chunked (RFC 9112: 501)", "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + smuggled, 501},
		{"obs-fold", "GET /env HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n" + smuggled, 400},
		{"bare LF", "GET /env HTTP/1.1\nHost: a\nX-A: one\n\n" + smuggled, 400},
		{"bare LF in one line", "GET /env HTTP/1.1\r\nHost: a\nX-A: one\r\n\r\n" + smuggled, 400},
		{"NUL in a value", "GET /env HTTP/1.1\r\nHost: a\r\nX-A: o\x00ne\r\n\r\n" + smuggled, 400},
		{"CR in a value", "GET /env HTTP/1.1\r\nHost: a\r\nX-A: o\rne\r\n\r\n" + smuggled, 400},
		{"space before the colon", "GET /env HTTP/1.1\r\nHost: a\r\nX-A : one\r\n\r\n" + smuggled, 400},
		{"HTTP/1.2", "GET /env HTTP/1.2\r\nHost: a\r\n\r\n" + smuggled, 400},
		{"%zz in the path", "GET /a%zzb HTTP/1.1\r\nHost: a\r\n\r\n" + smuggled, 400},
		{"chunk size not hex", "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n" + smuggled, 400},
		{"request line too long", "GET /" + strings.Repeat("a", 300) + " HTTP/1.1\r\nHost: a\r\n\r\n" + smuggled, 414},
		{"too many fields", "GET /env HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X-A: b\r\n", 10) + "\r\n" + smuggled, 431},
		{"field too large", "GET /env HTTP/1.1\r\nHost: a\r\nX-A: " + strings.Repeat("b", 300) + "\r\n\r\n" + smuggled, 431},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resps, closed := rawExchange(t, h.Addr, tc.raw, 1)
			if len(resps) != 1 || resps[0].status != tc.status || !closed {
				t.Fatalf("got %d responses (closed %v), want one %d then a close: %+v", len(resps), closed, tc.status, resps)
			}
			if len(resps[0].body) > 64 {
				t.Errorf("refusal body is not short: %q", resps[0].body)
			}
		})
	}
	if n := h.Count(func(e herdtest.Event) bool { return strings.Contains(e.Str("path"), "smuggled") }); n != 0 {
		t.Errorf("%d smuggled requests reached the app", n)
	}

	t.Run("accepted shapes", func(t *testing.T) {
		raw := "GET /env HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 6.6.6.6\r\nX-Forwarded-For: 1.1.1.1\r\n" +
			"Cookie: a=1\r\nCookie: b=2\r\nAccept: text/html\r\nAccept: text/plain\r\n\r\n" +
			"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n" +
			"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nxyz" +
			"GET /hello HTTP/1.0\r\n\r\n"
		resps, _ := rawExchange(t, h.Addr, raw, 4)
		if len(resps) != 4 {
			t.Fatalf("got %d responses, want 4: %+v", len(resps), resps)
		}
		var env map[string]any
		if err := json.Unmarshal([]byte(resps[0].body), &env); err != nil {
			t.Fatalf("env: %v: %s", err, resps[0].body)
		}
		for k, want := range map[string]string{"HTTP_X_FORWARDED_FOR": "1.1.1.1", "HTTP_COOKIE": "a=1; b=2", "HTTP_ACCEPT": "text/html, text/plain"} {
			if env[k] != want {
				t.Errorf("%s = %v, want %q", k, env[k], want)
			}
		}
		if got := []string{resps[1].body, resps[2].body, resps[3].body}; got[0] != "abcde" || got[1] != "xyz" || got[2] != "Hello, World!" {
			t.Errorf("bodies %q", got)
		}
	})
}

// TestPathInfoDecoding: PATH_INFO is percent-decoded with its bytes as latin-1 (PEP 3333),
// and the raw path stays in REQUEST_URI and RAW_URI, so %2F is not lost.
func TestPathInfoDecoding(t *testing.T) {
	h := herdtest.Start(t, herdtest.Options{Dir: testAppsDir(t), Args: []string{"fixture:app", "--workers", "1"}})
	h.WaitReady(1, 60*time.Second)
	cases := []struct{ uri, pathInfo string }{
		{"/env/a%2Fb?x=%2F", "/env/a/b"},
		{"/env/%C3%A9t%C3%A9", "/env/\u00c3\u00a9t\u00c3\u00a9"}, // UTF-8 bytes, each a latin-1 char
		{"/env/%ff%fe", "/env/\u00ff\u00fe"},                     // not UTF-8 at all
		{"/env/a%20b+c", "/env/a b+c"},
		{"/env/\xc3\xa9", "/env/\u00c3\u00a9"}, // raw non-ASCII bytes in the request line
	}
	for _, tc := range cases {
		resps, _ := rawExchange(t, h.Addr, "GET "+tc.uri+" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 1)
		if len(resps) != 1 || resps[0].status != 200 {
			t.Fatalf("%q: %+v", tc.uri, resps)
		}
		var env map[string]any
		if err := json.Unmarshal([]byte(resps[0].body), &env); err != nil {
			t.Fatal(err)
		}
		if env["PATH_INFO"] != tc.pathInfo || env["REQUEST_URI"] != latin1(tc.uri) || env["RAW_URI"] != latin1(tc.uri) {
			t.Errorf("%q: PATH_INFO %q REQUEST_URI %q RAW_URI %q, want PATH_INFO %q", tc.uri, env["PATH_INFO"], env["REQUEST_URI"], env["RAW_URI"], tc.pathInfo)
		}
	}
}

// latin1 is how the worker shows raw bytes to the app: one char per byte.
func latin1(s string) string {
	r := make([]rune, len(s))
	for i := range len(s) {
		r[i] = rune(s[i])
	}
	return string(r)
}

// TestThreadsServeAtOnce: with --threads 4, one worker runs 4 slow requests at the same
// time, on 4 threads, and tells the app wsgi.multithread.
func TestThreadsServeAtOnce(t *testing.T) {
	h := herdtest.Start(t, herdtest.Options{Dir: testAppsDir(t), Args: []string{"fixture:app", "--workers", "1", "--threads", "4"}})
	h.WaitReady(1, 60*time.Second)
	c := herdtest.Client()
	_, body := herdtest.Get(t, c, h.URL+"/env")
	var env map[string]any
	if err := json.Unmarshal([]byte(body), &env); err != nil || env["wsgi.multithread"] != true {
		t.Fatalf("wsgi.multithread = %v (%v)", env["wsgi.multithread"], err)
	}
	const sleep = 2 * time.Second
	start := time.Now()
	threads := make(chan string, 4)
	for range 4 {
		go func() {
			status, body := herdtest.Get(t, c, h.URL+"/slow?t=2")
			threads <- strconv.Itoa(status) + " " + body
		}()
	}
	seen := map[string]bool{}
	for range 4 {
		got := <-threads
		if !strings.HasPrefix(got, "200 ") {
			t.Fatalf("slow request: %q", got)
		}
		seen[got] = true
	}
	// One at a time would take 4 x 2 s; at once, 2 s and the overhead of a busy machine.
	if took := time.Since(start); took > sleep+1500*time.Millisecond || len(seen) != 4 {
		t.Fatalf("4 requests of %s took %s on threads %v: not served at once", sleep, took, seen)
	}
}

// TestSlowClientsDoNotHoldWorkers: 50 clients reading a 6 MiB answer at 1 KiB/s do not
// stop a fast client from getting 200s from a 2-worker herd: the master takes each answer
// whole into its response buffer and frees the worker at once. The answers are that large
// because Linux takes up to 4 MiB of a slow reader's data into the socket (tcp_wmem): with
// smaller ones the test would pass without any buffer (with --response-buffer 0 at 6 MiB,
// only the first 2 clients are ever answered).
func TestSlowClientsDoNotHoldWorkers(t *testing.T) {
	h := herdtest.Start(t, herdtest.Options{Dir: testAppsDir(t), Args: []string{"fixture:app", "--workers", "2", "--queue-timeout", "60s", "--response-buffer", "8MiB"}})
	h.WaitReady(2, 60*time.Second)
	const slowClients, size = 50, 6 << 20
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var firstBytes atomic.Int32
	var conns []net.Conn
	defer func() {
		close(stop)
		for _, c := range conns {
			_ = c.Close() // unblocks readers still waiting for their first bytes
		}
		wg.Wait()
	}()
	for range slowClients {
		conn, err := net.Dial("tcp", h.Addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		// A small receive window, so the kernel cannot take the answer off herd's hands.
		_ = conn.(*net.TCPConn).SetReadBuffer(4096)
		if _, err := io.WriteString(conn, "GET /big?n="+strconv.Itoa(size)+" HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1024)
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for i := 0; ; i++ {
				if _, err := io.ReadFull(conn, buf); err != nil {
					return
				}
				if i == 0 {
					firstBytes.Add(1)
				}
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		}()
	}
	// A long limit: 300 MB go through the master, slow under -race on a busy machine.
	herdtest.EventuallyNil(t, 60*time.Second, "every slow client's first bytes", func() error {
		if n := firstBytes.Load(); n < slowClients {
			return fmt.Errorf("%d of %d slow clients have theirs", n, slowClients)
		}
		return nil
	})
	// Every slow client has its answer started, and reads 1 KiB a second of 512: without
	// the buffer both workers would be held for minutes.
	c := herdtest.Client()
	c.Timeout = 10 * time.Second
	var worst time.Duration
	for range 20 {
		start := time.Now()
		status, body := herdtest.Get(t, c, h.URL+"/hello")
		took := time.Since(start)
		worst = max(worst, took)
		if status != 200 || body != "Hello, World!" {
			t.Fatalf("fast client got %d %q", status, body)
		}
	}
	// Normal latency is a few ms; 2 s is the margin for a machine shared by many tests.
	if worst > 2*time.Second {
		t.Fatalf("slowest fast request took %s", worst)
	}
	t.Logf("20 fast requests beside %d slow clients: slowest %s", slowClients, worst)
}

// TestStreamingResponsesFlushPartByPart: an event stream, and a response whose app sets
// X-Accel-Buffering: no, reach the client part by part as the app yields them.
func TestStreamingResponsesFlushPartByPart(t *testing.T) {
	h := herdtest.Start(t, herdtest.Options{Dir: testAppsDir(t), Args: []string{"fixture:app", "--workers", "1"}})
	h.WaitReady(1, 60*time.Second)
	for _, mode := range []string{"sse", "accel"} {
		t.Run(mode, func(t *testing.T) {
			resp, err := herdtest.Client().Get(h.URL + "/paced?n=3&pause=0.6&mode=" + mode)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if v := resp.Header.Get("X-Accel-Buffering"); v != "" {
				t.Errorf("X-Accel-Buffering reached the client: %q", v)
			}
			part := make([]byte, len("data: part\n\n"))
			var arrivals []time.Time
			for range 3 {
				if _, err := io.ReadFull(resp.Body, part); err != nil {
					t.Fatal(err)
				}
				arrivals = append(arrivals, time.Now())
			}
			// Parts are 0.6 s apart at the app: buffered, they would arrive together.
			if gap := arrivals[2].Sub(arrivals[0]); gap < time.Second {
				t.Fatalf("3 parts 0.6 s apart arrived within %s: not streamed", gap)
			}
		})
	}
}

// TestValidatorConformance runs scripts/testapps/conformapp.py, every route inside
// wsgiref.validate.validator, through each request shape a browser or client sends: each is
// answered right and no worker logs a validator error.
func TestValidatorConformance(t *testing.T) {
	h := herdtest.Start(t, herdtest.Options{Dir: testAppsDir(t), Args: []string{"conformapp:application", "--workers", "2"}})
	h.WaitReady(2, 60*time.Second)
	c := herdtest.Client()
	big := bytes.Repeat([]byte("0123456789abcdef"), 10<<20/16)
	bigSum := sha256.Sum256(big)
	emptySum := sha256.Sum256(nil)
	type reqCase struct {
		name, method, path string
		body               io.Reader
		header             http.Header
		status             int
		check              func(t *testing.T, resp *http.Response, body string)
	}
	bodyIs := func(want string) func(*testing.T, *http.Response, string) {
		return func(t *testing.T, _ *http.Response, body string) {
			if body != want {
				t.Errorf("body %q, want %q", body, want)
			}
		}
	}
	chunked := func(b []byte) io.Reader { return io.MultiReader(bytes.NewReader(b)) } // no length: sent chunked
	env := func(check func(map[string]any) string) func(*testing.T, *http.Response, string) {
		return func(t *testing.T, _ *http.Response, body string) {
			var e map[string]any
			if err := json.Unmarshal([]byte(body), &e); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if msg := check(e); msg != "" {
				t.Error(msg)
			}
		}
	}
	cases := []reqCase{
		{name: "GET", method: "GET", path: "/x", status: 200, check: bodyIs("GET /x  0 " + hex.EncodeToString(emptySum[:]))},
		{name: "HEAD", method: "HEAD", path: "/x", status: 200, check: func(t *testing.T, r *http.Response, body string) {
			if body != "" || r.ContentLength != 7 {
				t.Errorf("HEAD: body %q, length %d", body, r.ContentLength)
			}
		}},
		{name: "POST empty", method: "POST", path: "/x", body: strings.NewReader(""), status: 200, check: bodyIs("POST /x  0 " + hex.EncodeToString(emptySum[:]))},
		{name: "POST 10 MiB", method: "POST", path: "/x", body: bytes.NewReader(big), status: 200, check: bodyIs(fmt.Sprintf("POST /x  %d %x", len(big), bigSum))},
		{name: "PUT chunked 10 MiB", method: "PUT", path: "/x", body: chunked(big), status: 200, check: bodyIs(fmt.Sprintf("PUT /x  %d %x", len(big), bigSum))},
		{name: "PATCH", method: "PATCH", path: "/x?a=1&b=%20", body: strings.NewReader("patch"), status: 200, check: bodyIs(fmt.Sprintf("PATCH /x a=1&b=%%20 5 %x", sha256.Sum256([]byte("patch"))))},
		{name: "DELETE", method: "DELETE", path: "/x", status: 200, check: bodyIs("DELETE /x  0 " + hex.EncodeToString(emptySum[:]))},
		{name: "OPTIONS", method: "OPTIONS", path: "/x", status: 200, check: func(t *testing.T, r *http.Response, _ string) {
			if r.Header.Get("Allow") == "" {
				t.Error("no Allow header")
			}
		}},
		{name: "encoded and non-ASCII path", method: "GET", path: "/caf%C3%A9/a%2Fb", status: 200, check: bodyIs("GET /caf\u00c3\u00a9/a/b  0 " + hex.EncodeToString(emptySum[:]))},
		{name: "repeated headers", method: "GET", path: "/env", header: http.Header{"Cookie": {"a=1", "b=2"}, "Accept": {"text/html", "text/plain"}}, status: 200,
			check: env(func(e map[string]any) string {
				if e["HTTP_COOKIE"] != "a=1; b=2" || e["HTTP_ACCEPT"] != "text/html, text/plain" {
					return fmt.Sprintf("Cookie %q Accept %q", e["HTTP_COOKIE"], e["HTTP_ACCEPT"])
				}
				return ""
			})},
		{name: "chunked upload environ", method: "POST", path: "/env", body: chunked([]byte("abc")), status: 200,
			check: env(func(e map[string]any) string {
				if e["CONTENT_LENGTH"] != "3" || e["__body_length"] != float64(3) {
					return fmt.Sprintf("CONTENT_LENGTH %v, body %v", e["CONTENT_LENGTH"], e["__body_length"])
				}
				return ""
			})},
		{name: "multiple Set-Cookie", method: "GET", path: "/cookies", status: 200, check: func(t *testing.T, r *http.Response, _ string) {
			if got := r.Header.Values("Set-Cookie"); len(got) != 2 {
				t.Errorf("Set-Cookie %q", got)
			}
		}},
		{name: "204", method: "GET", path: "/status/204", status: 204, check: bodyIs("")},
		{name: "304", method: "GET", path: "/status/304", status: 304, check: bodyIs("")},
		{name: "write()", method: "GET", path: "/write", status: 200, check: bodyIs("written, then returned")},
		{name: "file_wrapper", method: "GET", path: "/file", status: 200, check: bodyIs(strings.Repeat("0123456789", 1000))},
		{name: "exc_info", method: "GET", path: "/excinfo", status: 500, check: bodyIs("error page")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, h.URL+tc.path, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			for k, vv := range tc.header {
				req.Header[k] = vv
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			tc.check(t, resp, string(b))
		})
	}
	for _, ev := range h.Events() {
		if line := fmt.Sprint(ev); strings.Contains(line, "AssertionError") || strings.Contains(line, "WSGIWarning") || strings.Contains(line, "Traceback") {
			t.Errorf("validator error in the worker log: %s", line)
		}
	}
}

// environRequests are the raw requests the differential test sends to herd and to uWSGI.
// Every one ends with Connection: close (or is HTTP/1.0), so both servers close after it.
//
// differs names the environ keys that differ for that request shape only, each with its
// reason in docs/differences.md; "no answer" means uWSGI does not answer it at all.
var environRequests = []struct{ name, raw, differs string }{
	{"plain GET", "GET /env HTTP/1.1\r\nHost: example.com\r\n", ""},
	{"query string", "GET /env?a=1&b=two HTTP/1.1\r\nHost: example.com\r\n", ""},
	{"encoded query", "GET /env?q=%20%2F%C3%A9&x HTTP/1.1\r\nHost: example.com\r\n", ""},
	{"raw non-ASCII query", "GET /env?q=\xc3\xa9 HTTP/1.1\r\nHost: example.com\r\n", ""},
	{"encoded slash", "GET /env/a%2Fb HTTP/1.1\r\nHost: example.com\r\n", ""},
	{"encoded UTF-8 path", "GET /env/caf%C3%A9 HTTP/1.1\r\nHost: example.com\r\n", ""},
	{"encoded invalid UTF-8 path", "GET /env/%ff%fe HTTP/1.1\r\nHost: example.com\r\n", ""},
	{"raw UTF-8 path", "GET /env/caf\xc3\xa9 HTTP/1.1\r\nHost: example.com\r\n", ""},
	{"plus and space escape", "GET /env/a+b%20c HTTP/1.1\r\nHost: example.com\r\n", ""},
	{"dot segments", "GET /env/./x/../y HTTP/1.1\r\nHost: example.com\r\n", "PATH_INFO"},
	{"double slash", "GET /env//x HTTP/1.1\r\nHost: example.com\r\n", ""},
	{"absolute form", "GET http://example.com/env?x=1 HTTP/1.1\r\nHost: example.com\r\n", "no answer"},
	{"Host with port", "GET /env HTTP/1.1\r\nHost: example.com:8080\r\n", ""},
	{"HTTP/1.0 without Host", "GET /env HTTP/1.0\r\n", ""},
	{"POST form", "POST /env HTTP/1.1\r\nHost: example.com\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\r\na=1&b=2", ""},
	{"POST empty", "POST /env HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\n", ""},
	{"PUT", "PUT /env HTTP/1.1\r\nHost: example.com\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", ""},
	{"PATCH", "PATCH /env HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\n\r\nabc", ""},
	{"DELETE", "DELETE /env HTTP/1.1\r\nHost: example.com\r\n", ""},
	{"OPTIONS", "OPTIONS /env HTTP/1.1\r\nHost: example.com\r\n", ""},
	{"repeated Cookie", "GET /env HTTP/1.1\r\nHost: example.com\r\nCookie: a=1\r\nCookie: b=2\r\n", "HTTP_COOKIE"},
	{"repeated Accept", "GET /env HTTP/1.1\r\nHost: example.com\r\nAccept: text/html\r\nAccept: text/plain\r\n", ""},
	{"repeated custom header", "GET /env HTTP/1.1\r\nHost: example.com\r\nX-Multi: a\r\nX-Multi: b\r\n", ""},
	{"underscore header", "GET /env HTTP/1.1\r\nHost: example.com\r\nX_Forwarded_For: 6.6.6.6\r\n", "HTTP_X_FORWARDED_FOR"},
	{"lower-case header", "GET /env HTTP/1.1\r\nHost: example.com\r\nx-custom-thing: v\r\n", ""},
	{"browser headers", "GET /env HTTP/1.1\r\nHost: example.com\r\nUser-Agent: Mozilla/5.0\r\nAccept-Encoding: gzip, br\r\nAccept-Language: fr, en;q=0.5\r\nReferer: http://example.com/a\r\n", ""},
	{"Authorization", "GET /env HTTP/1.1\r\nHost: example.com\r\nAuthorization: Basic dXNlcjpwYXNz\r\n", ""},
	{"Content-Type on a GET", "GET /env HTTP/1.1\r\nHost: example.com\r\nContent-Type: text/plain\r\n", ""},
	{"latin-1 header value", "GET /env HTTP/1.1\r\nHost: example.com\r\nX-Name: caf\xe9\r\n", ""},
	{"empty header value", "GET /env HTTP/1.1\r\nHost: example.com\r\nX-Empty:\r\n", ""},
	{"padded header value", "GET /env HTTP/1.1\r\nHost: example.com\r\nX-Pad:   v  v   \r\n", "HTTP_X_PAD"},
	{"long header value", "GET /env HTTP/1.1\r\nHost: example.com\r\nX-Long: " + strings.Repeat("y", 4000) + "\r\n", ""},
	{"chunked upload", "POST /env HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "CONTENT_LENGTH,HTTP_TRANSFER_ENCODING,__body_length,__body_sha256"},
	{"Expect 100-continue", "POST /env HTTP/1.1\r\nHost: example.com\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", ""},
}

// environDifferences are the environ keys herd and uWSGI fill differently on purpose or by
// nature; docs/differences.md gives the reason for each.
var environDifferences = map[string]bool{
	"REMOTE_PORT": true, "SERVER_PORT": true, "SERVER_NAME": true, "RAW_URI": true, "UWSGI_SCHEME": true,
	"wsgi.input_terminated": true, "wsgi.multiprocess": true,
}

// TestEnvironMatchesUwsgi: an environ-echo app served by herd and by `uwsgi --http-socket`
// sees the same WSGI-visible environ for each request of environRequests, but for the keys
// in environDifferences and the request shapes docs/differences.md lists.
func TestEnvironMatchesUwsgi(t *testing.T) {
	uwsgiBin := herdtest.RequireTool(t, "uwsgi", "uwsgi")
	herdtest.RequirePythonModule(t, "/usr/bin/python3", "wsgiref", "python3")
	uwsgiAddr := startUwsgi(t, []string{uwsgiBin, "--plugin", "python3"}, testAppsDir(t), "conformapp:application")
	h := herdtest.Start(t, herdtest.Options{Dir: testAppsDir(t), Args: []string{"conformapp:application", "--workers", "1", "--python", "/usr/bin/python3"}})
	h.WaitReady(1, 60*time.Second)

	for _, rq := range environRequests {
		t.Run(rq.name, func(t *testing.T) {
			raw := rq.raw
			if !strings.Contains(raw, "\r\n\r\n") {
				raw += "Connection: close\r\n\r\n"
			} else {
				head, body, _ := strings.Cut(raw, "\r\n\r\n")
				raw = head + "\r\nConnection: close\r\n\r\n" + body
			}
			herdEnv := environOf(t, h.Addr, raw)
			if herdEnv == nil || herdEnv["REQUEST_METHOD"] == nil {
				t.Fatalf("herd did not answer with the environ: %v", herdEnv)
			}
			uwsgiEnv := environOf(t, uwsgiAddr, raw)
			if rq.differs == "no answer" {
				if uwsgiEnv != nil {
					t.Errorf("uWSGI answers now: %v (update docs/differences.md)", uwsgiEnv)
				}
				return
			}
			allowed := map[string]bool{}
			for k := range strings.SplitSeq(rq.differs, ",") {
				allowed[k] = true
			}
			for k, d := range diffEnviron(herdEnv, uwsgiEnv) {
				if !allowed[k] {
					t.Errorf("%s", d)
				}
				delete(allowed, k)
			}
			delete(allowed, "")
			for k := range allowed {
				t.Errorf("%s no longer differs: update environRequests and docs/differences.md", k)
			}
		})
	}
}

func environOf(t *testing.T, addr, raw string) map[string]any {
	t.Helper()
	resps, _ := rawExchange(t, addr, raw, 1)
	if len(resps) == 0 {
		return nil
	}
	last := resps[len(resps)-1]
	var env map[string]any
	if err := json.Unmarshal([]byte(last.body), &env); err != nil {
		return map[string]any{"__status": last.status, "__body": last.body}
	}
	return env
}

// diffEnviron lists, by key, the keys whose values differ, but for environDifferences.
func diffEnviron(herdEnv, uwsgiEnv map[string]any) map[string]string {
	out := map[string]string{}
	keys := map[string]bool{}
	for k := range herdEnv {
		keys[k] = true
	}
	for k := range uwsgiEnv {
		keys[k] = true
	}
	for k := range keys {
		if environDifferences[k] || strings.HasPrefix(k, "uwsgi.") {
			continue
		}
		hv, hok := herdEnv[k]
		uv, uok := uwsgiEnv[k]
		if fmt.Sprint(hv) != fmt.Sprint(uv) || hok != uok {
			out[k] = fmt.Sprintf("%s: herd %q (%v), uwsgi %q (%v)", k, fmt.Sprint(hv), hok, fmt.Sprint(uv), uok)
		}
	}
	return out
}

// startUwsgi runs `uwsgi --http-socket` as PEERS.md gives it, with one process, and waits
// until it accepts connections. uwsgi is the command line's start: Debian's uwsgi with
// "--plugin python3", or the venv's pyuwsgi (bin/uwsgi), whose Python is built in.
func startUwsgi(t *testing.T, uwsgi []string, dir, module string, env ...string) string {
	t.Helper()
	addr := herdtest.FreeAddr(t)
	args := append(append([]string(nil), uwsgi[1:]...), "--master", "--processes", "1", "--http-socket", addr,
		"--module", module, "--chdir", dir, "--disable-logging", "--need-app", "--die-on-term", "--buffer-size", "32768")
	cmd := exec.Command(uwsgi[0], args...)
	cmd.Env = append(os.Environ(), env...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("uwsgi output:\n%s", out.String())
		}
	})
	herdtest.WaitListening(t, addr, 20*time.Second, "uwsgi")
	return addr
}

// appStep is one request of a real app's scenario; run returns what must be the same under
// herd and under uWSGI.
type appStep struct {
	name string
	run  func(t *testing.T, base string, c *http.Client) appOutcome
}

// appOutcome is what a client sees of a response, less what differs by nature (dates,
// per-response CSRF tokens, cookie values).
type appOutcome struct {
	Status  int
	Headers map[string]string
	Body    string
}

// mattering are the response headers compared between herd and uWSGI (not Date or Expires,
// which follow the clock).
var mattering = []string{"Content-Type", "Content-Length", "Location", "X-Frame-Options", "Vary",
	"Cache-Control", "Content-Disposition", "Last-Modified", "Referrer-Policy"}

var csrfValue = regexp.MustCompile(`(name="csrfmiddlewaretoken" value=)"[^"]+"`)

func outcomeOf(t *testing.T, resp *http.Response, err error) appOutcome {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	o := appOutcome{Status: resp.StatusCode, Headers: map[string]string{}, Body: csrfValue.ReplaceAllString(string(b), `$1"TOKEN"`)}
	for _, k := range mattering {
		if v := resp.Header.Values(k); len(v) > 0 {
			o.Headers[k] = strings.Join(v, " | ")
		}
	}
	var cookies []string
	for _, ck := range resp.Cookies() {
		cookies = append(cookies, ck.Name)
	}
	o.Headers["Set-Cookie names"] = strings.Join(cookies, ",")
	return o
}

func noRedirects() *http.Client {
	jar, _ := cookiejar.New(nil)
	c := herdtest.Client()
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

// djangoSteps walks the Django project as a browser would.
func djangoSteps() []appStep {
	token := map[string]string{} // per server: each has its own CSRF cookie
	upload := func(t *testing.T, base string, c *http.Client) appOutcome {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		_ = mw.WriteField("title", "caf\u00e9")
		_ = mw.WriteField("csrfmiddlewaretoken", token[base])
		fw, _ := mw.CreateFormFile("file", "data.bin")
		_, _ = fw.Write(bytes.Repeat([]byte{0, 1, 2, 255}, 50000))
		_ = mw.Close()
		req, _ := http.NewRequest("POST", base+"/upload", &buf)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		req.Header.Set("Referer", base+"/upload")
		resp, err := c.Do(req)
		return outcomeOf(t, resp, err)
	}
	return []appStep{
		{"admin login page", func(t *testing.T, base string, c *http.Client) appOutcome {
			resp, err := c.Get(base + "/admin/login/")
			o := outcomeOf(t, resp, err)
			u, _ := url.Parse(base)
			for _, ck := range c.Jar.Cookies(u) {
				if ck.Name == "csrftoken" {
					token[base] = ck.Value
				}
			}
			return o
		}},
		{"login POST without the CSRF token", func(t *testing.T, base string, c *http.Client) appOutcome {
			resp, err := c.PostForm(base+"/admin/login/", url.Values{"username": {"a"}, "password": {"b"}})
			o := outcomeOf(t, resp, err)
			o.Body = "" // Django's 403 page names the reason; its length is compared
			return o
		}},
		{"login POST with the CSRF token, wrong password", func(t *testing.T, base string, c *http.Client) appOutcome {
			resp, err := c.PostForm(base+"/admin/login/?next=/admin/", url.Values{"username": {"nobody"}, "password": {"wrong"}, "csrfmiddlewaretoken": {token[base]}, "next": {"/admin/"}})
			return outcomeOf(t, resp, err)
		}},
		{"multipart upload", upload},
		{"redirect", func(t *testing.T, base string, c *http.Client) appOutcome {
			resp, err := c.Get(base + "/go")
			return outcomeOf(t, resp, err)
		}},
		{"admin index redirects to login", func(t *testing.T, base string, c *http.Client) appOutcome {
			resp, err := c.Get(base + "/admin/")
			return outcomeOf(t, resp, err)
		}},
		{"404", func(t *testing.T, base string, c *http.Client) appOutcome {
			resp, err := c.Get(base + "/no/such/page")
			return outcomeOf(t, resp, err)
		}},
		{"static file", func(t *testing.T, base string, c *http.Client) appOutcome {
			resp, err := c.Get(base + "/static/admin/css/base.css")
			return outcomeOf(t, resp, err)
		}},
	}
}

func flaskSteps() []appStep {
	get := func(path string) func(*testing.T, string, *http.Client) appOutcome {
		return func(t *testing.T, base string, c *http.Client) appOutcome {
			resp, err := c.Get(base + path)
			return outcomeOf(t, resp, err)
		}
	}
	return []appStep{
		{"JSON GET", get("/json?a=1&b=caf%C3%A9")},
		{"JSON POST", func(t *testing.T, base string, c *http.Client) appOutcome {
			resp, err := c.Post(base+"/json", "application/json", strings.NewReader(`{"x": [1, 2, "\u00e9"]}`))
			return outcomeOf(t, resp, err)
		}},
		{"streaming", get("/stream")},
		{"file", get("/file")},
		{"404", get("/nope")},
	}
}

// TestRealAppsMatchUwsgi serves a Django project and a Flask app, unchanged, under herd and
// under uwsgi --http-socket, and walks each as a browser would: every response has the same
// status, body and the headers that matter. Twice: under Debian's /usr/bin/python3 (Django
// 3.2, Flask 2.2) beside Debian's uWSGI, and under the venv of today's peers (make venv:
// Django 6.1, Flask 3.1) beside its uWSGI (pyuwsgi), the same Python on both sides.
func TestRealAppsMatchUwsgi(t *testing.T) {
	t.Run("debian", func(t *testing.T) {
		uwsgiBin := herdtest.RequireTool(t, "uwsgi", "uwsgi")
		herdtest.RequirePythonModule(t, "/usr/bin/python3", "django", "python3-django")
		herdtest.RequirePythonModule(t, "/usr/bin/python3", "flask", "python3-flask")
		realAppsMatchUwsgi(t, "/usr/bin/python3", []string{uwsgiBin, "--plugin", "python3"})
	})
	t.Run("venv", func(t *testing.T) {
		python := herdtest.VenvPython(t)
		realAppsMatchUwsgi(t, python, []string{filepath.Join(filepath.Dir(python), "uwsgi")})
	})
}

// realAppsMatchUwsgi is TestRealAppsMatchUwsgi under one Python, with uwsgi as startUwsgi
// takes it.
func realAppsMatchUwsgi(t *testing.T, python string, uwsgi []string) {
	for _, app := range []struct {
		name, module string
		steps        []appStep
		want         map[string]int
	}{
		{"django", "djangoproject:application", djangoSteps(), map[string]int{
			"admin login page": 200, "login POST without the CSRF token": 403,
			"login POST with the CSRF token, wrong password": 200, "multipart upload": 200,
			"redirect": 302, "admin index redirects to login": 302, "404": 404, "static file": 200}},
		{"flask", "flaskapp:app", flaskSteps(), map[string]int{"JSON GET": 200, "JSON POST": 200, "streaming": 200, "file": 200, "404": 404}},
	} {
		t.Run(app.name, func(t *testing.T) {
			dbDir := t.TempDir()
			h := herdtest.Start(t, herdtest.Options{Dir: testAppsDir(t), Env: []string{"HERD_DJANGO_DB=" + filepath.Join(dbDir, "herd.sqlite3")},
				Args: []string{app.module, "--workers", "1", "--python", python}})
			h.WaitReady(1, 60*time.Second)
			// herd's worker migrated the database at import: uWSGI starts from a copy,
			// rather than migrating again (seconds on a busy machine).
			if b, err := os.ReadFile(filepath.Join(dbDir, "herd.sqlite3")); err == nil {
				if err := os.WriteFile(filepath.Join(dbDir, "uwsgi.sqlite3"), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			uwsgiAddr := startUwsgi(t, uwsgi, testAppsDir(t), app.module, "HERD_DJANGO_DB="+filepath.Join(dbDir, "uwsgi.sqlite3"))
			herdClient, uwsgiClient := noRedirects(), noRedirects()
			// uWSGI's --http-socket closes the connection after each answer without saying
			// so (no "Connection: close" in its HTTP/1.1 answers): a client that reuses it
			// races the close, and a POST that loses is reset, not retried.
			uwsgiClient.Transport = &http.Transport{DisableKeepAlives: true}
			for _, step := range app.steps {
				got := step.run(t, h.URL, herdClient)
				peer := step.run(t, "http://"+uwsgiAddr, uwsgiClient)
				if got.Status != app.want[step.name] {
					t.Errorf("%s: herd answered %d, want %d: %.300s", step.name, got.Status, app.want[step.name], got.Body)
				}
				if !reflect.DeepEqual(got, peer) {
					t.Errorf("%s: herd and uWSGI differ:\n herd  %d %v %.200q\n uwsgi %d %v %.200q", step.name, got.Status, got.Headers, got.Body, peer.Status, peer.Headers, peer.Body)
				}
			}
			if strings.Contains(h.Output(), "Traceback") {
				t.Errorf("a traceback in herd's log")
			}
		})
	}
}
