package h1

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func parseTestHead(t *testing.T, raw, method string) (*ResponseHead, *bufio.Reader, error) {
	t.Helper()
	br := bufio.NewReaderSize(strings.NewReader(raw), 16)
	var head ResponseHead
	err := ReadResponseHead(br, method, &head)
	return &head, br, err
}

func TestReadResponseHeadAccepts(t *testing.T) {
	for _, tc := range []struct {
		name, raw, method string
		want              ResponseHead
		body              string
	}{
		{"hello", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello", "GET",
			ResponseHead{StatusCode: 200, ContentLength: 5, Header: http.Header{"Content-Type": {"text/plain"}, "Content-Length": {"5"}}}, "hello"},
		{"chunks with extensions", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;a=b\r\nab\r\n0001\r\nc\r\n0;x\r\n\r\n", "GET",
			ResponseHead{StatusCode: 200, ContentLength: -1, Chunked: true, Header: http.Header{"Transfer-Encoding": {"chunked"}}}, "abc"},
		{"chunked with trailers", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n", "GET",
			ResponseHead{StatusCode: 200, ContentLength: -1, Chunked: true, Header: http.Header{"Transfer-Encoding": {"chunked"}}}, "abc"},
		{"to EOF", "HTTP/1.0 200 OK\r\nx-lower:  spaced value\t\r\n\r\nall of it", "GET",
			ResponseHead{StatusCode: 200, ContentLength: -1, Close: true, Header: http.Header{"X-Lower": {"spaced value"}}}, "all of it"},
		{"HEAD keeps its length", "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n", "HEAD",
			ResponseHead{StatusCode: 200, ContentLength: 13, NoBody: true, Header: http.Header{"Content-Length": {"13"}}}, ""},
		{"304 without length", "HTTP/1.1 304 Not Modified\r\n\r\n", "GET",
			ResponseHead{StatusCode: 304, NoBody: true, Header: http.Header{}}, ""},
		{"no reason, repeated field, close", "HTTP/1.1 404\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n", "GET",
			ResponseHead{StatusCode: 404, Close: true, Header: http.Header{"Set-Cookie": {"a=1", "b=2"}, "Connection": {"Close"}, "Content-Length": {"0"}}}, ""},
		{"1.0 keep-alive, equal lengths", "HTTP/1.0 201 \r\nConnection: keep-alive\r\nContent-Length: 2, 2\r\n\r\nok", "POST",
			ResponseHead{StatusCode: 201, ContentLength: 2, Header: http.Header{"Connection": {"keep-alive"}, "Content-Length": {"2, 2"}}}, "ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			head, br, err := parseTestHead(t, tc.raw, tc.method)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*head, tc.want) {
				t.Fatalf("head\n got %+v\nwant %+v", *head, tc.want)
			}
			body, err := io.ReadAll(head.Body(br))
			if err != nil || string(body) != tc.body {
				t.Fatalf("body %q, %v; want %q", body, err, tc.body)
			}
			if br.Buffered() != 0 {
				t.Fatalf("%d bytes left after the body", br.Buffered())
			}
		})
	}
}

func TestReadResponseHeadRefuses(t *testing.T) {
	for _, raw := range []string{
		"HTTP/1.2 200 OK\r\n\r\n",
		"HTTP/2 200 OK\r\n\r\n",
		"http/1.1 200 OK\r\n\r\n",
		"HTTP/1.1 20 OK\r\n\r\n",
		"HTTP/1.1 2000 OK\r\n\r\n",
		"HTTP/1.1 099 Low\r\n\r\n",
		"HTTP/1.1 2x0 OK\r\n\r\n",
		"HTTP/1.1 200 O\x00K\r\n\r\n",
		"HTTP/1.1 200 OK\n\n",
		"HTTP/1.1 200 OK\r\nA: b\n\r\n",
		"HTTP/1.1 200 OK\r\nA: b\rInjected: yes\r\n\r\n",
		"HTTP/1.1 200 OK\r\nA: b\x01\r\n\r\n",
		"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n",
		"HTTP/1.1 200 OK\r\nBad Name: b\r\n\r\n",
		"HTTP/1.1 200 OK\r\n: nameless\r\n\r\n",
		"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n",
		"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		"\r\n",
	} {
		_, _, err := parseTestHead(t, raw, "GET")
		if !errors.Is(err, ErrBadResponse) {
			t.Errorf("%q: err %v, want ErrBadResponse", raw, err)
		}
	}
}

func TestReadResponseHeadShortAndLong(t *testing.T) {
	if _, _, err := parseTestHead(t, "", "GET"); !errors.Is(err, io.EOF) {
		t.Errorf("empty: %v, want EOF", err)
	}
	if _, _, err := parseTestHead(t, "HTTP/1.1 200 OK\r\nA: b", "GET"); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("cut head: %v, want ErrUnexpectedEOF", err)
	}
	long := "HTTP/1.1 200 OK\r\nX-Long: " + strings.Repeat("v", 100<<10) + "\r\n\r\n"
	head, _, err := parseTestHead(t, long, "GET")
	if err != nil || len(head.Header.Get("X-Long")) != 100<<10 {
		t.Errorf("a 100 KiB field through a 16-byte buffer: %v", err)
	}
	huge := "HTTP/1.1 200 OK\r\nX-Long: " + strings.Repeat("v", maxResponseHead) + "\r\n\r\n"
	if _, _, err := parseTestHead(t, huge, "GET"); !errors.Is(err, ErrBadResponse) {
		t.Errorf("head over the limit: %v, want ErrBadResponse", err)
	}
}

func TestResponseBodyFraming(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		want      error
	}{
		{"short length body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", io.ErrUnexpectedEOF},
		{"bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", ErrBadResponse},
		{"chunks cut", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab", io.ErrUnexpectedEOF},
		{"trailers cut", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n", io.ErrUnexpectedEOF},
		{"trailer with bare LF", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\n\r\n", ErrBadResponse},
		// The rules of a chunked request body (grammar.go's chunks), on a worker's answer too.
		{"chunk size with a bare LF", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n", ErrBadResponse},
		{"chunk longer than its size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n", ErrBadResponse},
		{"chunk size overflowing int64", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nabc\r\n0\r\n\r\n", ErrBadResponse},
		{"chunk extension of 5000 bytes", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;a=" + strings.Repeat("b", 5000) + "\r\nabc\r\n0\r\n\r\n", ErrBadResponse},
		{"folded trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: 1\r\n 2\r\n\r\n", ErrBadResponse},
		{"101 trailers", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + strings.Repeat("T: 1\r\n", 101) + "\r\n", ErrBadResponse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			head, br, err := parseTestHead(t, tc.raw, "GET")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadAll(head.Body(br)); !errors.Is(err, tc.want) {
				t.Fatalf("body error %v, want %v", err, tc.want)
			}
		})
	}
}

// BenchmarkReadResponseHead compares the head reader with net/http's on the hello app's
// answer as worker.py frames it.
func BenchmarkReadResponseHead(b *testing.B) {
	const raw = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!"
	src := strings.NewReader(raw)
	br := bufio.NewReaderSize(src, 16<<10)
	req, _ := http.NewRequest("GET", "/", nil)
	body := make([]byte, 64)
	b.Run("herd", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			src.Reset(raw)
			br.Reset(src)
			var head ResponseHead
			if err := ReadResponseHead(br, "GET", &head); err != nil {
				b.Fatal(err)
			}
			if n, _ := io.ReadFull(head.Body(br), body[:13]); n != 13 {
				b.Fatal("short body")
			}
		}
	})
	b.Run("net-http", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			src.Reset(raw)
			br.Reset(src)
			resp, err := http.ReadResponse(br, req)
			if err != nil {
				b.Fatal(err)
			}
			if n, _ := io.ReadFull(resp.Body, body[:13]); n != 13 {
				b.Fatal("short body")
			}
		}
	})
}
