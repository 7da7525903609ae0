package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// The framed link: one connection between the master and a multiplexed worker (asgi, and
// gevent when it comes) carries many requests at once, each a stream of frames. A frame is
// a 10-byte header, then its payload:
//
//	type (uint8) | flags (uint8) | stream (uint32 LE) | length (uint32 LE) | payload
//
// docs/protocol.md ("The framed link") is the contract; this file is its Go codec.

// FrameHeaderSize is the size of a frame header.
const FrameHeaderSize = 10

// MaxFramePayload bounds every frame's payload. A data frame is further bounded by the
// stream's credit (InitialWindow and the WINDOW frames since).
const MaxFramePayload = 1 << 20

// InitialWindow is how many data bytes each side may send on a new stream before the other
// grants more with WINDOW frames.
const InitialWindow = 1 << 16

// FrameType says what a frame carries. M: sent by the master; W: by the worker.
type FrameType uint8

const (
	// FrameRequest (M) opens an HTTP stream: a uwsgi packet head (4-byte header, modifier2 1
	// or 2, then the vars block) with no body. FlagEnd: the request has no body.
	FrameRequest FrameType = 1
	// FrameBody (M) is request body bytes; FlagEnd on the last one.
	FrameBody FrameType = 2
	// FrameStarted (W) says the worker has the request and is running it: a link that
	// breaks before it came proves the request was never begun, so it may go elsewhere.
	FrameStarted FrameType = 3
	// FrameResponseStart (W): the status and headers (AppendResponseStart). FlagEnd: no body.
	FrameResponseStart FrameType = 4
	// FrameResponseBody (W) is response body bytes; FlagEnd on the last one.
	FrameResponseBody FrameType = 5
	// FrameSendFile (W) ends the response with a file's content, sent by the master: the
	// payload is the absolute path (ASGI's http.response.pathsend).
	FrameSendFile FrameType = 6
	// FrameEarlyHints (W): a 103 response's headers (a headers block), before the start.
	FrameEarlyHints FrameType = 7
	// FrameDisconnect (M): the client went away, or the master gave up on the stream; the
	// payload is one reason byte (Reason*). The worker tells the app, and ends the stream
	// (FrameEnd) when its task ends, if nothing ended it before.
	FrameDisconnect FrameType = 8
	// FrameEnd (W) ends a stream that no final response frame ended: the app's task is
	// over. One byte: 0 when it ended well, 1 when it failed (a response begun and not
	// complete is then cut, not pretended whole; none begun gets a 502).
	FrameEnd FrameType = 9
	// FrameWindow (both) grants the other side more credit on a stream: uint32 LE bytes.
	FrameWindow FrameType = 10
	// FrameWSConnect (M) opens a WebSocket stream: the handshake request, as FrameRequest's.
	FrameWSConnect FrameType = 16
	// FrameWSAccept (W) accepts it: a uint16 LE length and the subprotocol (empty: none),
	// then a headers block of extra response headers.
	FrameWSAccept FrameType = 17
	// FrameWSText and FrameWSBinary (both) carry a message, split over frames when it is
	// larger than a frame or the credit: FlagMore on every frame but its last.
	FrameWSText   FrameType = 18
	FrameWSBinary FrameType = 19
	// FrameWSClose (both): a uint16 LE close code and a UTF-8 reason (AppendClose). From
	// the worker before an accept it denies the handshake (403); after one it closes the
	// socket. The stream ends when both sides sent theirs, or at a FrameDisconnect.
	FrameWSClose FrameType = 20
	// FramePing (M, stream 0) asks the worker's loop to answer FramePong with the payload.
	FramePing FrameType = 30
	FramePong FrameType = 31
)

// Frame flags.
const (
	// FlagEnd marks the last frame of a request or response body.
	FlagEnd uint8 = 1
	// FlagMore marks a WebSocket message frame that the next one of the stream continues.
	FlagMore uint8 = 2
)

// Disconnect reasons.
const (
	ReasonClientGone uint8 = 0 // the client closed its connection
	ReasonTimeout    uint8 = 1 // --timeout: the worker logs the request's task stack
	ReasonShutdown   uint8 = 2 // the master gives the stream up (worker retiring)
)

var (
	// ErrShortFrame means b holds less than a whole frame yet: read more.
	ErrShortFrame = errors.New("frame: incomplete frame")
	// ErrFrameTooLarge means a frame's length exceeds MaxFramePayload.
	ErrFrameTooLarge = errors.New("frame: payload larger than 1 MiB")
	// ErrFrameType means the type byte names no frame.
	ErrFrameType = errors.New("frame: unknown type")
	// ErrFrameFlags means flags the type does not take.
	ErrFrameFlags = errors.New("frame: flags the type does not take")
	// ErrFrameStream means stream 0 on a stream's frame, or another on a link's frame.
	ErrFrameStream = errors.New("frame: wrong stream id for the type")
	// ErrFramePayload means a payload that does not fit its type's layout.
	ErrFramePayload = errors.New("frame: malformed payload")
	// ErrHeaderName and ErrHeaderValue refuse a response header the HTTP grammar refuses.
	ErrHeaderName  = errors.New("frame: header name is not a token")
	ErrHeaderValue = errors.New("frame: header value holds a control byte")
	// ErrStatus means a status outside 100-599 (or 103 as a final one).
	ErrStatus = errors.New("frame: status outside 200-599")
)

// Frame is one decoded frame; Payload aliases the input.
type Frame struct {
	Type    FrameType
	Flags   uint8
	Stream  uint32
	Payload []byte
}

// frameRule is what a type takes: its flags, whether it lives on stream 0, and the
// smallest and largest payload.
type frameRule struct {
	flags    uint8
	link     bool
	min, max int
}

var frameRules = [...]frameRule{
	FrameRequest:       {flags: FlagEnd, min: HeaderSize, max: MaxFramePayload},
	FrameBody:          {flags: FlagEnd, max: MaxFramePayload},
	FrameStarted:       {},
	FrameResponseStart: {flags: FlagEnd, min: 2, max: MaxFramePayload},
	FrameResponseBody:  {flags: FlagEnd, max: MaxFramePayload},
	FrameSendFile:      {min: 1, max: 4096},
	FrameEarlyHints:    {max: MaxFramePayload},
	FrameDisconnect:    {min: 1, max: 1},
	FrameEnd:           {min: 1, max: 1},
	FrameWindow:        {min: 4, max: 4},
	FrameWSConnect:     {min: HeaderSize, max: MaxFramePayload},
	FrameWSAccept:      {min: 2, max: MaxFramePayload},
	FrameWSText:        {flags: FlagMore, max: MaxFramePayload},
	FrameWSBinary:      {flags: FlagMore, max: MaxFramePayload},
	FrameWSClose:       {min: 2, max: 2 + 123},
	FramePing:          {link: true, max: 8},
	FramePong:          {link: true, max: 8},
}

// known reports whether t is a frame type, and its rule.
func (t FrameType) rule() (frameRule, bool) {
	if int(t) >= len(frameRules) {
		return frameRule{}, false
	}
	r := frameRules[t]
	known := t != 0 && (r.max > 0 || t == FrameStarted)
	return r, known
}

// IsData reports whether frames of type t count against the stream's credit.
func (t FrameType) IsData() bool {
	switch t {
	case FrameBody, FrameResponseBody, FrameWSText, FrameWSBinary:
		return true
	}
	return false
}

func (t FrameType) String() string {
	names := map[FrameType]string{FrameRequest: "REQUEST", FrameBody: "BODY", FrameStarted: "STARTED",
		FrameResponseStart: "RESPONSE_START", FrameResponseBody: "RESPONSE_BODY", FrameSendFile: "SENDFILE",
		FrameEarlyHints: "EARLY_HINTS", FrameDisconnect: "DISCONNECT", FrameEnd: "END", FrameWindow: "WINDOW",
		FrameWSConnect: "WS_CONNECT", FrameWSAccept: "WS_ACCEPT", FrameWSText: "WS_TEXT", FrameWSBinary: "WS_BINARY",
		FrameWSClose: "WS_CLOSE", FramePing: "PING", FramePong: "PONG"}
	if n, ok := names[t]; ok {
		return n
	}
	return fmt.Sprintf("FrameType(%d)", uint8(t))
}

// AppendFrameHeader appends the header of a frame whose payload of n bytes follows.
func AppendFrameHeader(dst []byte, t FrameType, flags uint8, stream uint32, n int) []byte {
	dst = append(dst, byte(t), flags)
	dst = binary.LittleEndian.AppendUint32(dst, stream)
	return binary.LittleEndian.AppendUint32(dst, uint32(n))
}

// AppendFrame appends a whole frame.
func AppendFrame(dst []byte, t FrameType, flags uint8, stream uint32, payload []byte) []byte {
	return append(AppendFrameHeader(dst, t, flags, stream, len(payload)), payload...)
}

// ParseFrameHeader reads a frame header from b and checks it; n is the payload length.
// ErrShortFrame when b is shorter than FrameHeaderSize.
func ParseFrameHeader(b []byte) (f Frame, n int, err error) {
	if len(b) < FrameHeaderSize {
		return Frame{}, 0, ErrShortFrame
	}
	f = Frame{Type: FrameType(b[0]), Flags: b[1], Stream: binary.LittleEndian.Uint32(b[2:])}
	size := binary.LittleEndian.Uint32(b[6:])
	rule, ok := f.Type.rule()
	switch {
	case !ok:
		return f, 0, fmt.Errorf("%w %d", ErrFrameType, b[0])
	case size > MaxFramePayload:
		return f, 0, ErrFrameTooLarge
	case f.Flags&^rule.flags != 0:
		return f, 0, fmt.Errorf("%w: %s with flags %#x", ErrFrameFlags, f.Type, f.Flags)
	case rule.link != (f.Stream == 0):
		return f, 0, fmt.Errorf("%w: %s on stream %d", ErrFrameStream, f.Type, f.Stream)
	case int(size) < rule.min || int(size) > rule.max:
		return f, 0, fmt.Errorf("%w: %s of %d bytes", ErrFramePayload, f.Type, size)
	}
	return f, int(size), nil
}

// DecodeFrame decodes the frame at the start of b and returns it with the bytes it took.
// ErrShortFrame means b does not hold all of it yet; any other error a broken link.
func DecodeFrame(b []byte) (Frame, int, error) {
	f, n, err := ParseFrameHeader(b)
	if err != nil {
		return f, 0, err
	}
	if len(b) < FrameHeaderSize+n {
		return f, 0, ErrShortFrame
	}
	f.Payload = b[FrameHeaderSize : FrameHeaderSize+n]
	return f, FrameHeaderSize + n, nil
}

// HeaderField is one response header as a worker sends it.
type HeaderField struct {
	Name, Value string
}

// AppendHeaders appends a headers block: for each field, uint16 LE name length, name,
// uint16 LE value length, value (the uwsgi vars block's layout).
func AppendHeaders(dst []byte, fields []HeaderField) []byte {
	for _, h := range fields {
		dst = binary.LittleEndian.AppendUint16(dst, uint16(len(h.Name)))
		dst = append(dst, h.Name...)
		dst = binary.LittleEndian.AppendUint16(dst, uint16(len(h.Value)))
		dst = append(dst, h.Value...)
	}
	return dst
}

// DecodeHeaders decodes a headers block and checks each field by HTTP's grammar: names are
// tokens, values hold no control byte but HTAB. fn gets each field; k and v alias b.
func DecodeHeaders(b []byte, fn func(k, v []byte)) error {
	return WalkVars(b, func(k, v []byte) error {
		if !isToken(k) {
			return fmt.Errorf("%w: %q", ErrHeaderName, k)
		}
		for _, c := range v {
			if c < ' ' && c != '\t' || c == 0x7f {
				return fmt.Errorf("%w: %s", ErrHeaderValue, k)
			}
		}
		fn(k, v)
		return nil
	})
}

// AppendResponseStart appends a FrameResponseStart payload: uint16 LE status, headers block.
func AppendResponseStart(dst []byte, status int, fields []HeaderField) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, uint16(status))
	return AppendHeaders(dst, fields)
}

// DecodeResponseStart decodes a FrameResponseStart payload; the final status must be
// 200-599 (the master forwards 103 through FrameEarlyHints only).
func DecodeResponseStart(p []byte, fn func(k, v []byte)) (status int, err error) {
	if len(p) < 2 {
		return 0, ErrFramePayload
	}
	status = int(binary.LittleEndian.Uint16(p))
	if status < 200 || status > 599 {
		return 0, fmt.Errorf("%w: %d", ErrStatus, status)
	}
	return status, DecodeHeaders(p[2:], fn)
}

// AppendWindow appends a FrameWindow payload.
func AppendWindow(dst []byte, n uint32) []byte { return binary.LittleEndian.AppendUint32(dst, n) }

// DecodeWindow decodes a FrameWindow payload; a grant of 0 is malformed.
func DecodeWindow(p []byte) (uint32, error) {
	if len(p) != 4 {
		return 0, ErrFramePayload
	}
	n := binary.LittleEndian.Uint32(p)
	if n == 0 || n > MaxFramePayload*64 {
		return 0, fmt.Errorf("%w: window grant of %d", ErrFramePayload, n)
	}
	return n, nil
}

// AppendClose appends a FrameWSClose payload.
func AppendClose(dst []byte, code uint16, reason string) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, code)
	return append(dst, reason...)
}

// DecodeClose decodes a FrameWSClose payload: a code of 1000-4999 (1005 and 1006 too: the
// client's close may carry no code, or the socket may have broken; whether a code may go
// out in a close frame is ValidCloseCode's question), the reason UTF-8.
func DecodeClose(p []byte) (code uint16, reason string, err error) {
	if len(p) < 2 {
		return 0, "", ErrFramePayload
	}
	code = binary.LittleEndian.Uint16(p)
	if code < 1000 || code > 4999 || !utf8.Valid(p[2:]) {
		return 0, "", fmt.Errorf("%w: close code %d", ErrFramePayload, code)
	}
	return code, string(p[2:]), nil
}

// ValidCloseCode reports whether a WebSocket close frame may carry code.
func ValidCloseCode(code uint16) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014, code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// DecodeAccept decodes a FrameWSAccept payload into its subprotocol and headers.
func DecodeAccept(p []byte, fn func(k, v []byte)) (subprotocol string, err error) {
	if len(p) < 2 {
		return "", ErrFramePayload
	}
	n := int(binary.LittleEndian.Uint16(p))
	if len(p) < 2+n || !isToken(p[2:2+n]) && n > 0 {
		return "", fmt.Errorf("%w: subprotocol", ErrFramePayload)
	}
	return string(p[2 : 2+n]), DecodeHeaders(p[2+n:], fn)
}

// AppendAccept appends a FrameWSAccept payload.
func AppendAccept(dst []byte, subprotocol string, fields []HeaderField) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(subprotocol)))
	dst = append(dst, subprotocol...)
	return AppendHeaders(dst, fields)
}

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c >= 0x80 || !tokenChars[c] {
			return false
		}
	}
	return true
}

var tokenChars = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()
