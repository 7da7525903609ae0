package h1

import (
	"bytes"
	"net/textproto"
	"strconv"
	"strings"
)

// Limits are gunicorn's --limit-request-* options. Zero means herd's ceiling (MaxHead).
type Limits struct {
	RequestLine int // bytes of the request line, without its CRLF: longer gets 414
	Fields      int // header field lines: more get 431
	FieldSize   int // bytes of one header field line, without its CRLF: longer gets 431
}

// maxHeadCeiling bounds a request head whatever the limits say. A head goes to a worker as
// the vars block of one uwsgi packet (at most 64 KiB), and each field becomes a var at least
// as long as its line: a much larger head could never reach a worker. The 4 KiB over the
// packet leave room for what a head has and its vars do not (CRLFs, the version).
const maxHeadCeiling = 0xFFFF + 4096

// MaxHead is the largest head the limits allow; larger ones get 431 before they are whole.
func (l Limits) MaxHead() int {
	if l.RequestLine <= 0 || l.Fields <= 0 || l.FieldSize <= 0 {
		return maxHeadCeiling
	}
	return min(maxHeadCeiling, l.RequestLine+2+l.Fields*(l.FieldSize+2)+2)
}

// rejection is why a head was refused: the status the client gets, and a short reason for
// the log.
type rejection struct {
	status int
	reason string
}

func (r rejection) Error() string { return strconv.Itoa(r.status) + " " + r.reason }

var (
	errBareLF          = &rejection{400, "bare-LF-line-end"}
	errBadRequestLine  = &rejection{400, "bad-request-line"}
	errBadMethod       = &rejection{400, "bad-method"}
	errBadTarget       = &rejection{400, "bad-request-target"}
	errObsFold         = &rejection{400, "obs-fold"}
	errBadField        = &rejection{400, "malformed-header-field"}
	errBadFieldValue   = &rejection{400, "bad-header-value"}
	errLineTooLong     = &rejection{414, "request-line-too-long"}
	errTooManyFields   = &rejection{431, "too-many-header-fields"}
	errFieldTooLarge   = &rejection{431, "header-field-too-large"}
	errHeadTooLarge    = &rejection{431, "request-header-too-large"}
	errCLWithTE        = &rejection{400, "Content-Length-with-Transfer-Encoding"}
	errTEInHTTP10      = &rejection{400, "Transfer-Encoding-in-HTTP/1.0"}
	errChunkedNotLast  = &rejection{400, "chunked-not-the-final-coding"}
	errChunkedTwice    = &rejection{400, "chunked-twice"}
	errUnknownCoding   = &rejection{501, "unsupported-transfer-coding"}
	errDifferingCL     = &rejection{400, "differing-Content-Length"}
	errBadCL           = &rejection{400, "bad-Content-Length"}
	errNoHost          = &rejection{400, "missing-Host"}
	errManyHosts       = &rejection{400, "more-than-one-Host"}
	errBadHost         = &rejection{400, "bad-Host"}
	errExpectation     = &rejection{417, "unsupported-Expect"}
	errHeadTimeout     = &rejection{408, "request-head-timeout"}
	errH2PrefaceOnHTTP = &rejection{400, "HTTP/2-preface-on-an-HTTP/1-listener"}
)

// field is one header field line, its name canonical (Content-Type) and its value trimmed.
type field struct{ name, value string }

// head is a parsed request head. Its strings share one copy of the head's bytes.
type head struct {
	method, target, proto string
	minor                 int // 0 or 1: HTTP/1.0 or HTTP/1.1
	fields                []field
	host                  string
	hasHost               bool
	contentLength         int64 // -1 when the body is chunked; 0 without a body
	chunked               bool
	close                 bool // the client will not send another request on this connection
	expectContinue        bool
}

// headEnd returns the length of the head at the start of b, up to and with its empty line,
// or -1 while it is incomplete. from is where the previous call stopped looking (a head
// trickling in small pieces is searched once in all), and is updated.
func headEnd(b []byte, from *int) int {
	for i := *from; ; {
		nl := bytes.IndexByte(b[i:], '\n')
		if nl < 0 {
			*from = i
			return -1
		}
		line := b[i : i+nl]
		i += nl + 1
		if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
			return i
		}
	}
}

// checkPartial refuses a head that is not whole yet but already breaks a limit.
func checkPartial(b []byte, l Limits, maxHead int) *rejection {
	if l.RequestLine > 0 {
		nl := bytes.IndexByte(b, '\n')
		if nl < 0 && len(b) > l.RequestLine+1 || nl > l.RequestLine+1 {
			return errLineTooLong
		}
	}
	if len(b) > maxHead {
		return errHeadTooLarge
	}
	return nil
}

// parseHead parses a whole head (from headEnd) into h, reusing h.fields. It enforces
// RFC 9112's framing rules strictly, so that no proxy in front of herd can read a request's
// end differently (request smuggling): Content-Length with Transfer-Encoding, chunked on
// HTTP/1.0, chunked not last or twice, differing lengths, obs-fold and bare LF are refused.
func parseHead(raw []byte, l Limits, h *head) *rejection {
	s := string(raw) // the one copy every field of h points into
	fields := h.fields[:0]
	*h = head{fields: fields}
	var contentLength, transferEncoding []string
	lineNo := 0
	for i := 0; i < len(s); lineNo++ {
		nl := strings.IndexByte(s[i:], '\n')
		line := s[i : i+nl]
		i += nl + 1
		if len(line) == 0 || line[len(line)-1] != '\r' {
			return errBareLF
		}
		line = line[:len(line)-1]
		if lineNo == 0 {
			if err := h.parseRequestLine(line, l); err != nil {
				return err
			}
			continue
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return errObsFold
		}
		if l.Fields > 0 && lineNo > l.Fields {
			return errTooManyFields
		}
		if l.FieldSize > 0 && len(line) > l.FieldSize {
			return errFieldTooLarge
		}
		colon := strings.IndexByte(line, ':')
		if colon <= 0 {
			return errBadField
		}
		name := line[:colon]
		for j := 0; j < len(name); j++ {
			if !isTokenByte(name[j]) {
				return errBadField // "Host :" included: no space before the colon
			}
		}
		value := trimOWS(line[colon+1:])
		for j := 0; j < len(value); j++ {
			if c := value[j]; c < ' ' && c != '\t' || c == 0x7f {
				return errBadFieldValue
			}
		}
		name = textproto.CanonicalMIMEHeaderKey(name)
		switch name {
		case "Host":
			if h.hasHost {
				return errManyHosts
			}
			h.hasHost, h.host = true, value
			continue // net/http's place for it is Request.Host, not the header map
		case "Content-Length":
			contentLength = appendList(contentLength, value)
		case "Transfer-Encoding":
			transferEncoding = appendList(transferEncoding, value)
		case "Connection":
			h.noteConnection(value)
		case "Expect":
			if strings.EqualFold(value, "100-continue") {
				h.expectContinue = true
			} else if value != "" {
				return errExpectation
			}
		}
		fields = append(fields, field{name, value})
	}
	h.fields = fields
	if h.minor == 1 && !h.hasHost && h.method != "CONNECT" {
		return errNoHost
	}
	if h.hasHost && !validHost(h.host) {
		return errBadHost
	}
	return h.framing(contentLength, transferEncoding)
}

func (h *head) parseRequestLine(line string, l Limits) *rejection {
	if l.RequestLine > 0 && len(line) > l.RequestLine {
		return errLineTooLong
	}
	// Only the two real versions: net/http would take HTTP/1.2 as 1.x, and HTTP/2's
	// preface means nothing on an HTTP/1 listener.
	rest, ok := strings.CutSuffix(line, " HTTP/1.1")
	h.minor = 1
	if !ok {
		if rest, ok = strings.CutSuffix(line, " HTTP/1.0"); !ok {
			if line == "PRI * HTTP/2.0" {
				return errH2PrefaceOnHTTP
			}
			return errBadRequestLine
		}
		h.minor = 0
	}
	h.proto = line[len(rest)+1:]
	method, target, ok := strings.Cut(rest, " ")
	if !ok || method == "" || target == "" || strings.IndexByte(target, ' ') >= 0 {
		return errBadRequestLine
	}
	for j := 0; j < len(method); j++ {
		if !isTokenByte(method[j]) {
			return errBadMethod
		}
	}
	h.method, h.target = method, target
	h.close = h.minor == 0 // HTTP/1.0 closes unless it asks for keep-alive
	return nil
}

// noteConnection reads the Connection header's options.
func (h *head) noteConnection(value string) {
	for opt := range strings.SplitSeq(value, ",") {
		switch opt = trimOWS(opt); {
		case strings.EqualFold(opt, "close"):
			h.close = true
		case strings.EqualFold(opt, "keep-alive") && h.minor == 0:
			h.close = false
		}
	}
}

// framing applies RFC 9112 6.1 and 6.3.
func (h *head) framing(contentLength, transferEncoding []string) *rejection {
	if len(transferEncoding) > 0 {
		last := transferEncoding[len(transferEncoding)-1]
		switch {
		case len(contentLength) > 0:
			return errCLWithTE
		case h.minor == 0:
			return errTEInHTTP10
		case !strings.EqualFold(last, "chunked"):
			// RFC 9112 6.3: the length cannot be known, which is a 400, whatever the coding.
			return errChunkedNotLast
		}
		for _, te := range transferEncoding[:len(transferEncoding)-1] {
			if strings.EqualFold(te, "chunked") {
				return errChunkedTwice
			}
		}
		if len(transferEncoding) > 1 {
			return errUnknownCoding // gzip, chunked: herd decodes no other coding
		}
		h.chunked, h.contentLength = true, -1
		return nil
	}
	if len(contentLength) == 0 {
		return nil
	}
	for _, v := range contentLength[1:] {
		if v != contentLength[0] {
			return errDifferingCL
		}
	}
	v := contentLength[0]
	if v == "" || len(v) > 18 {
		return errBadCL
	}
	var n int64
	for j := 0; j < len(v); j++ {
		if v[j] < '0' || v[j] > '9' {
			return errBadCL
		}
		n = n*10 + int64(v[j]-'0')
	}
	h.contentLength = n
	return nil
}

// appendList adds the comma-separated elements of a list header (RFC 9110 5.6.1).
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

func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// isTokenByte reports whether c may appear in a token (RFC 9110 5.6.2): a method or a
// field name.
func isTokenByte(c byte) bool {
	return c < 0x80 && tokenTable[c]
}

var tokenTable = alnumAnd("!#$%&'*+-.^_`|~")

// validHost is net/http's check of a Host value (httpguts.ValidHostHeader): the bytes a
// host, a port, an IPv6 literal or a registered name may hold.
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		if c >= 0x80 || !hostTable[c] {
			return false
		}
	}
	return true
}

var hostTable = alnumAnd("!$&'()*+,-.:;=[]_~%")

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
