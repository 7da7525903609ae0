package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
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
	h.WaitReady(1, 20*time.Second)

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

// TestRejectMethodNeedsTheToken: a client that sends the stand-in's method itself is an
// ordinary request, not a way to make herd answer with a chosen status.
func TestRejectMethodIsOrdinaryWithoutToken(t *testing.T) {
	h := herdtest.Start(t, herdtest.Options{Dir: testAppsDir(t), Args: []string{"fixture:app", "--workers", "1"}})
	h.WaitReady(1, 20*time.Second)
	resps, _ := rawExchange(t, h.Addr, "HERD-REJECT /0123/414/x HTTP/1.1\r\nHost: a\r\n\r\n", 1)
	if len(resps) != 1 || resps[0].status == 414 {
		t.Fatalf("got %+v", resps)
	}
}
