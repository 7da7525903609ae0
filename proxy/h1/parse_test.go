package h1

import (
	"net/http"
	"strings"
	"testing"
)

func TestParseHeadAccepts(t *testing.T) {
	cases := []struct {
		name, raw string
		check     func(t *testing.T, h *head)
	}{
		{"simple GET", "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n", func(t *testing.T, h *head) {
			if h.method != "GET" || h.target != "/a?b=1" || h.proto != "HTTP/1.1" || h.minor != 1 || h.host != "x" || h.close {
				t.Fatalf("%+v", h)
			}
			if len(h.fields) != 1 || h.fields[0] != (field{"User-Agent", "t"}) {
				t.Fatalf("fields %+v (Host belongs to Request.Host)", h.fields)
			}
		}},
		{"names canonical, values trimmed", "GET / HTTP/1.1\r\nhost: x\r\nx-forwarded-for: \t 1.2.3.4 \t\r\n\r\n", func(t *testing.T, h *head) {
			if h.fields[0] != (field{"X-Forwarded-For", "1.2.3.4"}) {
				t.Fatalf("%+v", h.fields)
			}
		}},
		{"HTTP/1.0 closes by default", "GET / HTTP/1.0\r\n\r\n", func(t *testing.T, h *head) {
			if !h.close || h.minor != 0 {
				t.Fatalf("%+v", h)
			}
		}},
		{"HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", func(t *testing.T, h *head) {
			if h.close {
				t.Fatal("keep-alive asked for")
			}
		}},
		{"Connection close among options", "GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade, close\r\n\r\n", func(t *testing.T, h *head) {
			if !h.close {
				t.Fatal("close not seen")
			}
		}},
		{"Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n", func(t *testing.T, h *head) {
			if h.contentLength != 12 || h.chunked {
				t.Fatalf("%+v", h)
			}
		}},
		{"same Content-Length twice", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\n", func(t *testing.T, h *head) {
			if h.contentLength != 3 {
				t.Fatalf("%+v", h)
			}
		}},
		{"chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n", func(t *testing.T, h *head) {
			if !h.chunked || h.contentLength != -1 {
				t.Fatalf("%+v", h)
			}
		}},
		{"Expect 100-continue", "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n", func(t *testing.T, h *head) {
			if !h.expectContinue {
				t.Fatal("not seen")
			}
		}},
		{"absolute-form", "GET http://example.com/p HTTP/1.1\r\nHost: other\r\n\r\n", func(t *testing.T, h *head) {
			if h.target != "http://example.com/p" {
				t.Fatalf("%+v", h)
			}
		}},
		{"CONNECT needs no Host", "CONNECT example.com:443 HTTP/1.1\r\n\r\n", func(t *testing.T, h *head) {}},
		{"empty value", "GET / HTTP/1.1\r\nHost: x\r\nX-Empty:\r\n\r\n", func(t *testing.T, h *head) {
			if h.fields[0] != (field{"X-Empty", ""}) {
				t.Fatalf("%+v", h.fields)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var h head
			if rej := parseHead([]byte(tc.raw), Limits{}, &h); rej != nil {
				t.Fatalf("refused: %v", rej)
			}
			tc.check(t, &h)
		})
	}
}

func TestParseHeadRefuses(t *testing.T) {
	long := strings.Repeat("a", 5000)
	cases := []struct {
		name, raw string
		limits    Limits
		want      *rejection
	}{
		{"bare LF in a field", "GET / HTTP/1.1\r\nHost: x\nA: b\r\n\r\n", Limits{}, errBareLF},
		{"bare LF after the request line", "GET / HTTP/1.1\nHost: x\r\n\r\n", Limits{}, errBareLF},
		{"HTTP/1.2", "GET / HTTP/1.2\r\nHost: x\r\n\r\n", Limits{}, errBadRequestLine},
		{"lower-case version", "GET / http/1.1\r\nHost: x\r\n\r\n", Limits{}, errBadRequestLine},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\n", Limits{}, errH2PrefaceOnHTTP},
		{"no target", "GET HTTP/1.1\r\nHost: x\r\n\r\n", Limits{}, errBadRequestLine},
		{"space in target", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", Limits{}, errBadRequestLine},
		{"two spaces", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", Limits{}, errBadRequestLine},
		{"bad method", "G(T / HTTP/1.1\r\nHost: x\r\n\r\n", Limits{}, errBadMethod},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n c\r\n\r\n", Limits{}, errObsFold},
		{"no colon", "GET / HTTP/1.1\r\nHost: x\r\nA b\r\n\r\n", Limits{}, errBadField},
		{"space before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", Limits{}, errBadField},
		{"empty name", "GET / HTTP/1.1\r\nHost: x\r\n: b\r\n\r\n", Limits{}, errBadField},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: x\r\nA: b\x00c\r\n\r\n", Limits{}, errBadFieldValue},
		{"CR in value", "GET / HTTP/1.1\r\nHost: x\r\nA: b\rc\r\n\r\n", Limits{}, errBadFieldValue},
		{"no Host in HTTP/1.1", "GET / HTTP/1.1\r\nA: b\r\n\r\n", Limits{}, errNoHost},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Limits{}, errManyHosts},
		{"bad Host", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", Limits{}, errBadHost},
		{"CL with TE", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", Limits{}, errCLWithTE},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", Limits{}, errTEInHTTP10},
		{"chunked not last", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", Limits{}, errChunkedNotLast},
		{"chunked twice", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", Limits{}, errChunkedTwice},
		{"unknown coding alone", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", Limits{}, errChunkedNotLast},
		{"gzip then chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Limits{}, errUnknownCoding},
		{"xchunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n", Limits{}, errChunkedNotLast},
		{"quoted chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", Limits{}, errChunkedNotLast},
		{"differing CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", Limits{}, errDifferingCL},
		{"signed CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n", Limits{}, errBadCL},
		{"hex CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x3\r\n\r\n", Limits{}, errBadCL},
		{"empty CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", Limits{}, errBadCL},
		{"huge CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", Limits{}, errBadCL},
		{"Expect other", "POST / HTTP/1.1\r\nHost: x\r\nExpect: fly\r\n\r\n", Limits{}, errExpectation},
		{"long request line", "GET /" + long + " HTTP/1.1\r\nHost: x\r\n\r\n", Limits{RequestLine: 4094}, errLineTooLong},
		{"too many fields", "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", Limits{Fields: 3}, errTooManyFields},
		{"long field", "GET / HTTP/1.1\r\nHost: x\r\nA: " + long + "\r\n\r\n", Limits{FieldSize: 4000}, errFieldTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var h head
			if got := parseHead([]byte(tc.raw), tc.limits, &h); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestHeadEndAndPartialLimits(t *testing.T) {
	raw := []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\nNEXT")
	for cut := 0; cut < len(raw)-4; cut++ {
		from := 0
		if end := headEnd(raw[:cut], &from); end != -1 {
			t.Fatalf("cut %d: end %d on a partial head", cut, end)
		}
	}
	from := 0
	if end := headEnd(raw, &from); end != len(raw)-4 {
		t.Fatalf("end %d", end)
	}
	if rej := checkPartial([]byte("GET /"+strings.Repeat("a", 100)), Limits{RequestLine: 50}, 1000); rej != errLineTooLong {
		t.Fatalf("request line: %v", rej)
	}
	if rej := checkPartial([]byte("GET / HTTP/1.1\r\nA: "+strings.Repeat("a", 2000)), Limits{}, 1000); rej != errHeadTooLarge {
		t.Fatalf("head: %v", rej)
	}
	if rej := checkPartial([]byte("GET / HTTP/1.1\r\nA: b"), Limits{RequestLine: 50}, 1000); rej != nil {
		t.Fatalf("fine head refused: %v", rej)
	}
}

func TestParseChunkSize(t *testing.T) {
	for line, want := range map[string]int64{"0": 0, "1a": 26, "FF;ext=1": 255, "10 ;x": 16} {
		if n, ok := parseChunkSize([]byte(line)); !ok || n != want {
			t.Errorf("%q: %d %v", line, n, ok)
		}
	}
	for _, line := range []string{"", "-1", "+1", "g", "1234567890abcdef0", " 1"} {
		if _, ok := parseChunkSize([]byte(line)); ok {
			t.Errorf("%q accepted", line)
		}
	}
}

// BenchmarkParseHead is a browser's head, as a hello request through a proxy sends it.
func BenchmarkParseHead(b *testing.B) {
	raw := []byte("GET /hello?name=x HTTP/1.1\r\nHost: example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n" +
		"Accept: text/html,application/xhtml+xml\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate\r\n" +
		"Connection: keep-alive\r\nContent-Length: 0\r\nCookie: a=1; b=2\r\n\r\n")
	var h head
	b.ReportAllocs()
	for b.Loop() {
		if rej := parseHead(raw, Limits{RequestLine: 4094, Fields: 100, FieldSize: 8190}, &h); rej != nil {
			b.Fatal(rej)
		}
	}
}

// CheckFields refuses what parseHead refuses of the same request sent as HTTP/1.1.
func TestCheckFields(t *testing.T) {
	l := Limits{RequestLine: 40, Fields: 3, FieldSize: 20}
	many := http.Header{"A": {"1", "2"}, "B": {"3"}}
	for _, tc := range []struct {
		name, target, host string
		header             http.Header
		want               int
	}{
		{"fits", "/", "x", http.Header{"A": {"1"}, "B": {"2"}}, 0},
		{"too many with the host", "/", "x", many, 431},
		{"as many without a host", "/", "", many, 0},
		{"a long field", "/", "x", http.Header{"Abc": {strings.Repeat("v", 16)}}, 431},
		{"a field just fitting", "/", "x", http.Header{"Abc": {strings.Repeat("v", 15)}}, 0},
		{"a long host", "/", strings.Repeat("h", 15), nil, 431},
		{"a long target", "/" + strings.Repeat("p", 30), "x", nil, 414},
	} {
		if got, _ := l.CheckFields("GET", tc.target, tc.host, tc.header); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	if got, _ := (Limits{}).CheckFields("GET", "/", "x", many); got != 0 {
		t.Errorf("no limits: %d", got)
	}
}
