package h1

import (
	"bytes"
	"errors"
	"net/textproto"
	"strconv"
	"strings"
)

// The grammar every reader of HTTP/1 in herd shares (RFC 9110, RFC 9112): the line ends of a
// head, tokens, field lines, list values, how a head frames its body, and chunked framing.
// parse.go reads a client's request head with it, answer.go a worker's answer, body.go a
// chunked request body. One set of rules, so that no shape is read one way from a client and
// another way from a worker, and a fix to one reader is a fix to all. Each reader turns a
// fault into its own outcome: a status and a close for a client, a 502 for a worker's answer.

// rejection is a fault in what was read: the status a client gets for it, and a short reason
// for the log (and, in a worker's answer, for the 502's log line).
type rejection struct {
	status int
	reason string
}

func (r rejection) Error() string { return strconv.Itoa(r.status) + " " + r.reason }

// The faults of any HTTP/1 head, then those only a request head can have (parse.go).
var (
	errBareLF         = &rejection{400, "bare-LF-line-end"}
	errObsFold        = &rejection{400, "obs-fold"}
	errBadField       = &rejection{400, "malformed-header-field"}
	errBadFieldValue  = &rejection{400, "bad-header-value"}
	errCLWithTE       = &rejection{400, "Content-Length-with-Transfer-Encoding"}
	errTEInHTTP10     = &rejection{400, "Transfer-Encoding-in-HTTP/1.0"}
	errChunkedNotLast = &rejection{400, "chunked-not-the-final-coding"}
	errChunkedTwice   = &rejection{400, "chunked-twice"}
	errUnknownCoding  = &rejection{501, "unsupported-transfer-coding"}
	errDifferingCL    = &rejection{400, "differing-Content-Length"}
	errBadCL          = &rejection{400, "bad-Content-Length"}

	errBadRequestLine  = &rejection{400, "bad-request-line"}
	errBadMethod       = &rejection{400, "bad-method"}
	errBadTarget       = &rejection{400, "bad-request-target"}
	errLineTooLong     = &rejection{414, "request-line-too-long"}
	errTooManyFields   = &rejection{431, "too-many-header-fields"}
	errFieldTooLarge   = &rejection{431, "header-field-too-large"}
	errHeadTooLarge    = &rejection{431, "request-header-too-large"}
	errNoHost          = &rejection{400, "missing-Host"}
	errManyHosts       = &rejection{400, "more-than-one-Host"}
	errBadHost         = &rejection{400, "bad-Host"}
	errExpectation     = &rejection{417, "unsupported-Expect"}
	errHeadTimeout     = &rejection{408, "request-head-timeout"}
	errH2PrefaceOnHTTP = &rejection{400, "HTTP/2-preface-on-an-HTTP/1-listener"}
)

// nextLine splits the first line off a head whose lines all end in LF (headEnd and
// readHeadBytes stop only after one), without its CRLF. Only CRLF ends a line: a bare LF is
// how one reader and another come to disagree on where a field ends.
func nextLine(s string) (line, rest string, fault *rejection) {
	nl := strings.IndexByte(s, '\n')
	if nl <= 0 || s[nl-1] != '\r' {
		return "", "", errBareLF
	}
	return s[:nl-1], s[nl+1:], nil
}

// crlfLine is nextLine's rule for one line read by itself (chunked framing), given without
// its LF.
func crlfLine(line []byte) ([]byte, bool) {
	if len(line) == 0 || line[len(line)-1] != '\r' {
		return nil, false
	}
	return line[:len(line)-1], true
}

// splitField splits a field line, "Name: value", into its canonical name (Content-Type) and
// its value without the whitespace around it. It refuses obs-fold (a line that continues
// the one before), a name that is not a token ("Host :" included: no space before the
// colon), and a control byte in the value (a CR or a NUL that some reader would take as a
// line end).
func splitField(line string) (name, value string, fault *rejection) {
	if line[0] == ' ' || line[0] == '\t' {
		return "", "", errObsFold
	}
	colon := strings.IndexByte(line, ':')
	if colon <= 0 || !isToken(line[:colon]) {
		return "", "", errBadField
	}
	value = trimOWS(line[colon+1:])
	if !validFieldValue(value) {
		return "", "", errBadFieldValue
	}
	return textproto.CanonicalMIMEHeaderKey(line[:colon]), value, nil
}

// validFieldValue: field-content of RFC 9110 5.5, visible ASCII, obs-text, space and tab.
func validFieldValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// isToken reports whether s is a token (RFC 9110 5.6.2): a method or a field name.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenByte(s[i]) {
			return false
		}
	}
	return true
}

func isTokenByte(c byte) bool {
	return c < 0x80 && tokenTable[c]
}

var tokenTable = alnumAnd("!#$%&'*+-.^_`|~")

// alnumAnd is the ASCII table of letters, digits and the bytes of extra.
func alnumAnd(extra string) (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range extra {
		t[c] = true
	}
	return t
}

func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// appendList adds the comma-separated elements of a list field (RFC 9110 5.6.1).
func appendList(dst []string, value string) []string {
	n := len(dst)
	for part := range strings.SplitSeq(value, ",") {
		if part = trimOWS(part); part != "" {
			dst = append(dst, part)
		}
	}
	if len(dst) == n {
		dst = append(dst, "") // an empty value is a value, and a bad one
	}
	return dst
}

// hasToken reports whether one of the list values holds token, in any case.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(trimOWS(part), token) {
				return true
			}
		}
	}
	return false
}

// frame applies RFC 9112 6.1 and 6.3 to the elements of a head's Content-Length and
// Transfer-Encoding fields: the body is chunked, or length bytes long, or (length -1, not
// chunked) of no declared length. It refuses every doubt, the shapes that two readers may
// frame differently (request smuggling, or a worker's next answer read from the wrong
// place): Content-Length with Transfer-Encoding, Transfer-Encoding on HTTP/1.0, chunked not
// last or twice, differing lengths. Another coding before chunked is refused too, as
// unsupported (501 for a request): herd decodes no coding but chunked.
func frame(contentLength, transferEncoding []string, http10 bool) (length int64, chunked bool, fault *rejection) {
	if len(transferEncoding) > 0 {
		switch {
		case len(contentLength) > 0:
			return 0, false, errCLWithTE
		case http10:
			return 0, false, errTEInHTTP10
		case !strings.EqualFold(transferEncoding[len(transferEncoding)-1], "chunked"):
			// RFC 9112 6.3: the length cannot be known, which is a 400, whatever the coding.
			return 0, false, errChunkedNotLast
		}
		for _, te := range transferEncoding[:len(transferEncoding)-1] {
			if strings.EqualFold(te, "chunked") {
				return 0, false, errChunkedTwice
			}
		}
		if len(transferEncoding) > 1 {
			return 0, false, errUnknownCoding // gzip, chunked
		}
		return -1, true, nil
	}
	if len(contentLength) == 0 {
		return -1, false, nil
	}
	for _, v := range contentLength[1:] {
		if v != contentLength[0] {
			return 0, false, errDifferingCL
		}
	}
	n, ok := parseLength(contentLength[0])
	if !ok {
		return 0, false, errBadCL
	}
	return n, false, nil
}

// parseLength reads a Content-Length: decimal digits only (no sign, no hex, no space), at
// most 18 of them, so that it cannot overflow an int64.
func parseLength(v string) (int64, bool) {
	if v == "" || len(v) > 18 {
		return 0, false
	}
	var n int64
	for j := 0; j < len(v); j++ {
		if v[j] < '0' || v[j] > '9' {
			return 0, false
		}
		n = n*10 + int64(v[j]-'0')
	}
	return n, true
}

// Bounds of a chunked body's framing: a chunk-size line with its extensions, and the
// trailer lines after the last chunk.
const (
	maxChunkLine = 4096
	maxTrailers  = 100
)

// errBadChunk is any chunked framing herd will not read: a bad size line, a missing CRLF,
// a framing line over maxChunkLine, too many or folded trailers.
var errBadChunk = errors.New("malformed chunked body")

type chunkState int

const (
	chunkSize    chunkState = iota // expecting a chunk-size line
	chunkData                      // left bytes of chunk data to pass
	chunkDataEnd                   // expecting the CRLF after chunk data
	chunkTrailer                   // expecting trailer lines up to an empty one
	chunkDone
)

// chunks follows a chunked body's framing (RFC 9112 7.1). The reader around it gives it
// the framing lines (CRLF-ended, at most maxChunkLine bytes, without the CRLF) and passes
// the data itself: a request body read off a client and a worker's answer read off its
// socket are framed by the same rules. Trailers are read past and dropped.
type chunks struct {
	state    chunkState
	left     int64 // bytes of the current chunk's data not passed yet
	trailers int
}

// line takes the framing line the state expects and moves on.
func (c *chunks) line(line []byte) error {
	switch c.state {
	case chunkDataEnd:
		if len(line) != 0 {
			return errBadChunk // a chunk longer than its size
		}
		c.state = chunkSize
	case chunkSize:
		size, ok := parseChunkSize(line)
		if !ok {
			return errBadChunk
		}
		c.left, c.state = size, chunkData
		if size == 0 {
			c.state = chunkTrailer
		}
	case chunkTrailer:
		c.trailers++
		switch {
		case len(line) == 0:
			c.state = chunkDone
		case c.trailers > maxTrailers, line[0] == ' ', line[0] == '\t':
			return errBadChunk
		}
	}
	return nil
}

// data notes n bytes of the current chunk's data passed.
func (c *chunks) data(n int) {
	c.left -= int64(n)
	if c.left == 0 {
		c.state = chunkDataEnd
	}
}

// parseChunkSize reads "1a2b" or "1a2b;ext=v" (RFC 9112 7.1): at most 15 hex digits, so
// that it cannot overflow an int64.
func parseChunkSize(line []byte) (int64, bool) {
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimRight(line, " \t")
	if len(line) == 0 || len(line) > 15 || line[0] == '+' || line[0] == '-' {
		return 0, false
	}
	n, err := strconv.ParseInt(string(line), 16, 64)
	return n, err == nil
}
