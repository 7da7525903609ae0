package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestCheckHeadsByteByByte: the checker frames pipelined requests correctly whatever the
// size of the client's writes, here one byte at a time.
func TestCheckHeadsByteByByte(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &Handler{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if why, ok := parseRejection(r.Method, r.URL.Path); ok {
			h.refuse(w, r, why)
			return
		}
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(append([]byte(r.URL.Path+":"), b...))
	})}
	go func() { _ = srv.Serve(CheckHeads(ln, HeadLimits{RequestLine: 100, Fields: 10, FieldSize: 100})) }()
	defer srv.Close()

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw := "POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n" +
		"POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" +
		"GET /c HTTP/1.1\r\nHost: a\r\n\r\n" +
		"GET /d HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n" +
		"GET /never HTTP/1.1\r\nHost: a\r\n\r\n"
	go func() {
		for i := range len(raw) {
			if _, err := conn.Write([]byte{raw[i]}); err != nil {
				return
			}
		}
	}()
	br := bufio.NewReader(conn)
	want := []string{"200 /a:abc", "200 /b:hello", "200 /c:", "400 Bad Request\n"}
	for _, w := range want {
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("want %q: %v", w, err)
		}
		b, _ := io.ReadAll(resp.Body)
		got := resp.Status[:3] + " " + string(b)
		if resp.StatusCode == 400 {
			got = "400 " + string(b)
		}
		if got != w {
			t.Fatalf("got %q, want %q", got, w)
		}
	}
	if _, err := http.ReadResponse(br, nil); err == nil {
		t.Fatal("a request after a refused head was answered")
	}
}

func TestFraming(t *testing.T) {
	cases := []struct {
		cl, te []string
		http10 bool
		status int
		state  checkState
		n      int64
	}{
		{nil, nil, false, 0, inHead, 0},
		{[]string{"12"}, nil, false, 0, inBody, 12},
		{[]string{"12", "12"}, nil, false, 0, inBody, 12},
		{[]string{"12", "13"}, nil, false, 400, 0, 0},
		{[]string{"+12"}, nil, false, 400, 0, 0},
		{[]string{"-1"}, nil, false, 400, 0, 0},
		{nil, []string{"chunked"}, false, 0, inChunkSize, 0},
		{nil, []string{"Chunked"}, false, 0, inChunkSize, 0},
		{nil, []string{"chunked"}, true, 400, 0, 0},
		{[]string{"3"}, []string{"chunked"}, false, 400, 0, 0},
		{nil, []string{"chunked", "gzip"}, false, 400, 0, 0},
		{nil, []string{"chunked", "chunked"}, false, 400, 0, 0},
		{nil, []string{"gzip", "chunked"}, false, 0, passThrough, 0},
	}
	for _, tc := range cases {
		why, state, n := framing(tc.cl, tc.te, tc.http10)
		if why.status != tc.status || (tc.status == 0 && (state != tc.state || n != tc.n)) {
			t.Errorf("framing(%q, %q, %v) = %v %v %d", tc.cl, tc.te, tc.http10, why, state, n)
		}
	}
}

// TestCheckHeadsH2CPreface: with H2C, a connection that opens with HTTP/2's preface (even
// one byte at a time) passes through unjudged, frames and all; without it, or when the
// preface comes after a request, the checker refuses it like any bad request line.
func TestCheckHeadsH2CPreface(t *testing.T) {
	frames := "\x00\x00\x00\x04\x00\x00\x00\x00\x00" // an empty SETTINGS frame
	cases := []struct {
		name   string
		h2c    bool
		sent   string
		passed string // what net/http gets to read
	}{
		{"h2c", true, string(h2Preface) + frames, string(h2Preface) + frames},
		{"h2c off", false, string(h2Preface) + frames, string(rejection{400, "bad-request-line"}.request())},
		{"h2c, HTTP/1.1", true, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"h2c, preface second", true, "GET / HTTP/1.1\r\nHost: a\r\n\r\n" + string(h2Preface),
			"GET / HTTP/1.1\r\nHost: a\r\n\r\n" + string(rejection{400, "bad-request-line"}.request())},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer client.Close()
			go func() {
				for i := range len(tc.sent) {
					if _, err := client.Write([]byte{tc.sent[i]}); err != nil {
						return
					}
				}
				_ = client.Close()
			}()
			checked := &checkedConn{Conn: server, maxHead: maxHeadCeiling, maybeH2C: tc.h2c}
			got, err := io.ReadAll(checked)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.passed {
				t.Fatalf("net/http would read %q, want %q", got, tc.passed)
			}
		})
	}
}

// TestHeadScanResumes: a head that arrives in pieces is searched once in all: each search
// goes on after the last whole line of the one before. Searching from the start on every
// read made a 700 KiB head sent in 64-byte segments cost 0.9 s of the master's CPU.
func TestHeadScanResumes(t *testing.T) {
	var s headScan
	b := []byte("GET / HTTP/1.1\r\nA: b\r\nC: d")
	if end := s.headEnd(b); end != -1 || s.next != len("GET / HTTP/1.1\r\nA: b\r\n") || s.firstLF != len("GET / HTTP/1.1\r") {
		t.Fatalf("partial head: end %d, scan %+v", end, s)
	}
	// A scan that resumed at s.next cannot see a line end planted before it.
	b[3] = '\n'
	b = append(b, "\r\n\r\nbody"...)
	if end := s.headEnd(b); end != len(b)-len("body") {
		t.Fatalf("whole head: end %d, want %d", end, len(b)-len("body"))
	}
}

// TestCheckHeadsTimesOutASlowKeptAliveHead: the second head on a connection, trickled a byte
// at a time, is refused with 408 once HeadTimeout has passed since its first byte (net/http's
// own header timeout starts only when the checker hands over the whole head).
func TestCheckHeadsTimesOutASlowKeptAliveHead(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	const timeout = 300 * time.Millisecond
	checked := &checkedConn{Conn: server, limits: HeadLimits{HeadTimeout: timeout}, maxHead: maxHeadCeiling}
	first := "GET /a HTTP/1.1\r\nHost: a\r\n\r\n"
	started := make(chan time.Time, 1)
	go func() {
		if _, err := io.WriteString(client, first+"GET /b HTTP/1.1\r\n"); err != nil {
			return
		}
		started <- time.Now()
		for {
			time.Sleep(50 * time.Millisecond)
			if _, err := client.Write([]byte("X")); err != nil {
				return
			}
		}
	}()
	got, err := io.ReadAll(checked)
	refused := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	want := first + string(rejection{http.StatusRequestTimeout, "request-head-timeout"}.request())
	if string(got) != want {
		t.Fatalf("net/http would read %q, want %q", got, want)
	}
	if took := refused.Sub(<-started); took < timeout {
		t.Fatalf("refused %s after the head began, before the %s timeout", took, timeout)
	}
}
