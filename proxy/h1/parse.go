package h1

import (
	"bytes"
	"net/http"
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
// RFC 9112's framing rules strictly (grammar.go), so that no proxy in front of herd can read
// a request's end differently (request smuggling), and gunicorn's limits.
func parseHead(raw []byte, l Limits, h *head) *rejection {
	fields := h.fields[:0]
	*h = head{fields: fields}
	// Room for the usual one element of each: the lists stay on the stack.
	var clArr, teArr [2]string
	contentLength, transferEncoding := clArr[:0], teArr[:0]
	line, rest, rej := nextLine(string(raw)) // the one copy every field of h points into
	if rej != nil {
		return rej
	}
	if rej := h.parseRequestLine(line, l); rej != nil {
		return rej
	}
	for lineNo := 1; ; lineNo++ {
		if line, rest, rej = nextLine(rest); rej != nil {
			return rej
		}
		if line == "" {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return errObsFold // whatever the limits say: it is malformed before it is long
		}
		if l.Fields > 0 && lineNo > l.Fields {
			return errTooManyFields
		}
		if l.FieldSize > 0 && len(line) > l.FieldSize {
			return errFieldTooLarge
		}
		name, value, rej := splitField(line)
		if rej != nil {
			return rej
		}
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
	if h.hasHost && !ValidHost(h.host) {
		return errBadHost
	}
	length, chunked, rej := frame(contentLength, transferEncoding, h.minor == 0)
	if rej != nil {
		return rej
	}
	if length < 0 && !chunked {
		length = 0 // no body: head.contentLength keeps -1 for chunked
	}
	h.chunked, h.contentLength = chunked, length
	return nil
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
	if !isToken(method) {
		return errBadMethod
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

// ValidHost is net/http's check of a Host value (httpguts.ValidHostHeader): the bytes a
// host, a port, an IPv6 literal or a registered name may hold. HTTP/1's Host header and
// absolute-form targets and HTTP/2's :authority all get it.
func ValidHost(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		if c >= 0x80 || !hostTable[c] {
			return false
		}
	}
	return true
}

var hostTable = alnumAnd("!$&'()*+,-.:;=[]_~%")

// CheckFields applies the limits to a request that came as fields rather than as a head
// (HTTP/2): the same request, sent over HTTP/1.1, would be refused with the status and
// reason returned; 0 when it passes. Each value counts as a field line "Name: value", the
// host as one more (Host's line); the request line is method, target and version.
func (l Limits) CheckFields(method, target, host string, header http.Header) (int, string) {
	if l.RequestLine > 0 && len(method)+1+len(target)+len(" HTTP/1.1") > l.RequestLine {
		return errLineTooLong.status, errLineTooLong.reason
	}
	fields := 0
	if host != "" {
		fields = 1
		if l.FieldSize > 0 && len("Host: ")+len(host) > l.FieldSize {
			return errFieldTooLarge.status, errFieldTooLarge.reason
		}
	}
	for name, values := range header {
		fields += len(values)
		for _, v := range values {
			if l.FieldSize > 0 && len(name)+2+len(v) > l.FieldSize {
				return errFieldTooLarge.status, errFieldTooLarge.reason
			}
		}
	}
	if l.Fields > 0 && fields > l.Fields {
		return errTooManyFields.status, errTooManyFields.reason
	}
	return 0, ""
}
