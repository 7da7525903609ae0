package server

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/herd-server/herd/internal/herdtest"
)

// rawH2 is an HTTP/2 client connection that misbehaves on purpose: it speaks frames through
// x/net/http2's Framer and hpack, so that a test can send what net/http's client never
// would (a flow-control window of 0, a body announced and never sent, 500 header fields, an
// :authority with a space) and see every frame herd answers with.
type rawH2 struct {
	t    *testing.T
	conn net.Conn

	wmu  sync.Mutex // the Framer's writes and the encoder
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
	// autoWindow: DATA received is given back with WINDOW_UPDATE, so answers flow.
	autoWindow bool

	mu      sync.Mutex
	streams map[uint32]*h2Stream
	ended   error // the connection's end, as the reader saw it
}

// h2Stream is what the server sent on one stream.
type h2Stream struct {
	status int    // of the response HEADERS; 0 before them
	data   int64  // DATA bytes
	body   []byte // the first 4 KiB of them
	done   bool   // END_STREAM seen
	reset  bool
	code   http2.ErrCode
}

// dialH2C opens a cleartext HTTP/2 connection (prior knowledge, herd's --h2c) and sends the
// preface with settings.
func dialH2C(t *testing.T, addr string, autoWindow bool, settings ...http2.Setting) *rawH2 {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := &rawH2{t: t, conn: conn, autoWindow: autoWindow, streams: map[uint32]*h2Stream{}}
	c.fr = http2.NewFramer(conn, conn)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = 1 << 20
	c.enc = hpack.NewEncoder(&c.hbuf)
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	go c.read()
	return c
}

// read takes every frame the server sends, answers SETTINGS and PING as a client must, and
// records what came on each stream.
func (c *rawH2) read() {
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.mu.Lock()
			c.ended = err
			c.mu.Unlock()
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.write(func() error { return c.fr.WriteSettingsAck() })
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				c.write(func() error { return c.fr.WritePing(true, f.Data) })
			}
		case *http2.MetaHeadersFrame:
			st, _ := strconv.Atoi(f.PseudoValue("status"))
			c.update(f.StreamID, func(s *h2Stream) { s.status, s.done = st, s.done || f.StreamEnded() })
		case *http2.DataFrame:
			n := len(f.Data())
			c.update(f.StreamID, func(s *h2Stream) {
				s.data += int64(n)
				if len(s.body) < 4096 {
					s.body = append(s.body, f.Data()[:min(n, 4096-len(s.body))]...)
				}
				s.done = s.done || f.StreamEnded()
			})
			if c.autoWindow && n > 0 {
				c.write(func() error { return c.fr.WriteWindowUpdate(0, uint32(n)) })
				c.write(func() error { return c.fr.WriteWindowUpdate(f.StreamID, uint32(n)) })
			}
		case *http2.RSTStreamFrame:
			c.update(f.StreamID, func(s *h2Stream) { s.reset, s.code = true, f.ErrCode })
		}
	}
}

func (c *rawH2) write(f func() error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = f() // a write to a connection the server closed: the reader sees the end
}

func (c *rawH2) update(id uint32, f func(*h2Stream)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.streams[id]
	if s == nil {
		s = &h2Stream{}
		c.streams[id] = s
	}
	f(s)
}

// request opens stream id with the pseudo-header fields of a GET or POST of path and the
// fields given (name, value pairs); endStream: no body follows.
func (c *rawH2) request(id uint32, method, authority, path string, endStream bool, fields ...string) {
	c.t.Helper()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.hbuf.Reset()
	pairs := append([]string{":method", method, ":scheme", "http", ":authority", authority, ":path", path}, fields...)
	for i := 0; i+1 < len(pairs); i += 2 {
		_ = c.enc.WriteField(hpack.HeaderField{Name: pairs[i], Value: pairs[i+1]})
	}
	block := c.hbuf.Bytes()
	// One HEADERS frame, CONTINUATIONs for what is past the default 16 KiB frame size.
	const maxFrame = 16384
	first := block[:min(len(block), maxFrame)]
	err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: endStream, EndHeaders: len(block) <= maxFrame})
	for rest := block[len(first):]; err == nil && len(rest) > 0; {
		part := rest[:min(len(rest), maxFrame)]
		rest = rest[len(part):]
		err = c.fr.WriteContinuation(id, len(rest) == 0, part)
	}
	if err != nil {
		c.t.Fatalf("HEADERS on stream %d: %v", id, err)
	}
}

// data sends body bytes on stream id.
func (c *rawH2) data(id uint32, p []byte, end bool) {
	c.write(func() error { return c.fr.WriteData(id, end, p) })
}

// stream returns a copy of what stream id got so far.
func (c *rawH2) stream(id uint32) h2Stream {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.streams[id]; s != nil {
		return *s
	}
	return h2Stream{}
}

// waitStream waits until cond holds of stream id, and fails the test otherwise.
func (c *rawH2) waitStream(id uint32, limit time.Duration, what string, cond func(h2Stream) bool) h2Stream {
	c.t.Helper()
	var s h2Stream
	herdtest.Eventually(c.t, limit, what, func() bool {
		s = c.stream(id)
		return cond(s)
	})
	return s
}

// answered waits for stream id's response HEADERS and returns their status.
func (c *rawH2) answered(id uint32, limit time.Duration) int {
	c.t.Helper()
	return c.waitStream(id, limit, "an answer on stream "+strconv.Itoa(int(id)), func(s h2Stream) bool { return s.status != 0 || s.reset }).status
}
