package server

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// TestMalformedWorkerResponses: a real herd whose real worker's app writes a malformed
// response straight to its socket (testdata/rawapp.py). Each malformed head reaches the
// client as a 502 with nothing of it (the "Injected" header never), a body that breaks after
// its head cuts the client connection, and the next request is served. proxy's test of the
// same name covers more shapes, and whether the worker connection is reused.
func TestMalformedWorkerResponses(t *testing.T) {
	h := herdtest.Start(t, herdtest.Options{Dir: "testdata", Args: []string{"rawapp:app", "--workers", "1"}})
	h.WaitReady(1, 20*time.Second)
	const inj = "Injected: yes"
	for _, tc := range []struct {
		name, answer string
		cut          bool // the head went out, then the connection was cut
	}{
		{"no status code", "HTTP/1.1 \r\nContent-Length: 0\r\n\r\n", false},
		{"status 99", "HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n", false},
		{"status 1000", "HTTP/1.1 1000 High\r\nContent-Length: 0\r\n\r\n", false},
		{"no HTTP/ version", "200 OK\r\nContent-Length: 0\r\n\r\n", false},
		{"CR injection", "HTTP/1.1 200 OK\r\nX-A: a\r" + inj + "\r\nContent-Length: 0\r\n\r\n", false},
		{"LF injection", "HTTP/1.1 200 OK\r\nX-A: a\n" + inj + "\r\nContent-Length: 0\r\n\r\n", false},
		{"CRLF in the status line", "HTTP/1.1 200 OK\r\n" + inj + "\n\r\n", false},
		{"space in a header name", "HTTP/1.1 200 OK\r\nX A: b\r\nContent-Length: 0\r\n\r\n", false},
		{"colon-led header line", "HTTP/1.1 200 OK\r\n:" + inj + "\r\nContent-Length: 0\r\n\r\n", false},
		{"NUL in a header name", "HTTP/1.1 200 OK\r\nX\x00A: b\r\nContent-Length: 0\r\n\r\n", false},
		{"obs-fold", "HTTP/1.1 200 OK\r\nX-A: a\r\n " + inj + "\r\nContent-Length: 0\r\n\r\n", false},
		{"garbage before the status", "garbage\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false},
		{"body shorter than Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhi", false},
		{"differing Content-Lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi!", false},
		{"Content-Length and chunked", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", false},
		{"head cut", "HTTP/1.1 200 OK\r\nX-A: a", false},
		{"chunked body cut", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := rawBytes(t, h.Addr, "POST /raw HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: "+
				strconv.Itoa(len(tc.answer))+"\r\n\r\n"+tc.answer)
			head, _, complete := bytes.Cut(got, []byte("\r\n\r\n"))
			switch {
			case tc.cut && (!bytes.HasPrefix(got, []byte("HTTP/1.1 200 ")) || bytes.HasSuffix(got, []byte("0\r\n\r\n"))):
				t.Errorf("want the head, then a cut body; got %q", got)
			case !tc.cut && (!complete || !bytes.HasPrefix(head, []byte("HTTP/1.1 502 "))):
				t.Errorf("want a 502; got %q", got)
			}
			if strings.Contains(strings.ToLower(string(got)), "injected") {
				t.Errorf("the injected header reached the client: %q", got)
			}
			if got := rawBytes(t, h.Addr, "GET /ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"); !bytes.HasPrefix(got, []byte("HTTP/1.1 200 OK\r\n")) || !bytes.HasSuffix(got, []byte("\r\n\r\nok")) {
				t.Errorf("the next request got %q, want 200 ok", got)
			}
		})
	}
}

// rawBytes sends req on a new connection and returns every byte herd sent back before
// closing it.
func rawBytes(t *testing.T, addr, req string) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	var ne *net.OpError
	if err != nil && !(errors.As(err, &ne) && strings.Contains(err.Error(), "reset")) {
		t.Fatalf("reading the answer: %v (got %q)", err, got)
	}
	return got
}
