package server

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// TestASGIConformance tries the ASGI spec's HTTP, WebSocket and lifespan parts from
// outside, with raw sockets, against herd and, for comparison, uvicorn from the venv (same
// app: scripts/testapps/asgiapp.py). herd must pass every case; uvicorn's misses are
// reported, not failed.
func TestASGIConformance(t *testing.T) {
	targets := []struct {
		name  string
		start func(t *testing.T) string
	}{
		{"herd", func(t *testing.T) string { return startASGI(t, 1).Addr }},
		{"uvicorn", startUvicorn},
	}
	for _, target := range targets {
		t.Run(target.name, func(t *testing.T) {
			addr := target.start(t)
			passed, failed := 0, []string{}
			for _, c := range conformCases {
				if err := c.check(addr); err != nil {
					failed = append(failed, fmt.Sprintf("%s: %v", c.name, err))
					continue
				}
				passed++
			}
			t.Logf("%s passes %d of %d ASGI conformance cases", target.name, passed, len(conformCases))
			for _, f := range failed {
				if target.name == "herd" {
					t.Error(f)
				} else {
					t.Log("  misses " + f)
				}
			}
		})
	}
}

// startUvicorn runs uvicorn from the venv on the same app, or skips.
func startUvicorn(t *testing.T) string {
	python := herdtest.VenvPython(t)
	addr := herdtest.FreeAddr(t)
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(python, "-m", "uvicorn", "asgiapp:app", "--host", host, "--port", port, "--log-level", "warning")
	cmd.Dir = filepath.Join(herdtest.RepoRoot(t), "scripts", "testapps")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGKILL); _ = cmd.Wait() })
	herdtest.Eventually(t, 20*time.Second, "uvicorn listens", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr
}

type conformCase struct {
	name  string
	check func(addr string) error
}

// exchange sends raw bytes and reads one HTTP response from the same connection.
func exchange(addr, raw string, method string) (*http.Response, string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		return nil, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

func want(cond bool, format string, args ...any) error {
	if cond {
		return nil
	}
	return fmt.Errorf(format, args...)
}

var conformCases = []conformCase{
	{"GET", func(a string) error {
		resp, body, err := exchange(a, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "GET")
		if err != nil {
			return err
		}
		return want(resp.StatusCode == 200 && body == "Hello, ASGI!\n", "%d %q", resp.StatusCode, body)
	}},
	{"HEAD has no body", func(a string) error {
		c, err := net.Dial("tcp", a)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprint(c, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, &http.Request{Method: "HEAD"})
		if err != nil {
			return err
		}
		resp.Body.Close()
		next, err := http.ReadResponse(br, &http.Request{Method: "GET"})
		return want(err == nil && next.StatusCode == 200, "after HEAD the next response did not parse: %v", err)
	}},
	{"chunked request body", func(a string) error {
		resp, body, err := exchange(a, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "POST")
		if err != nil {
			return err
		}
		return want(resp.StatusCode == 200 && body == "hello world", "%d %q", resp.StatusCode, body)
	}},
	{"Expect: 100-continue", func(a string) error {
		c, err := net.Dial("tcp", a)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprint(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
		br := bufio.NewReader(c)
		line, err := br.ReadString('\n')
		if err != nil || !strings.Contains(line, "100") {
			return fmt.Errorf("no 100 Continue: %q %v", line, err)
		}
		_, _ = br.ReadString('\n')
		fmt.Fprint(c, "abc")
		resp, err := http.ReadResponse(br, &http.Request{Method: "POST"})
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		return want(string(b) == "abc", "body %q", b)
	}},
	{"streamed response is chunked", func(a string) error {
		resp, body, err := exchange(a, "GET /stream?n=3 HTTP/1.1\r\nHost: x\r\n\r\n", "GET")
		if err != nil {
			return err
		}
		return want(len(resp.TransferEncoding) == 1 && body == "chunk 0\nchunk 1\nchunk 2\n", "te %v body %q", resp.TransferEncoding, body)
	}},
	{"HTTP/1.0 stream is close-delimited", func(a string) error {
		resp, body, err := exchange(a, "GET /stream?n=2 HTTP/1.0\r\nHost: x\r\n\r\n", "GET")
		if err != nil {
			return err
		}
		return want(resp.StatusCode == 200 && body == "chunk 0\nchunk 1\n", "%d %q", resp.StatusCode, body)
	}},
	{"keep-alive: two requests, one connection", func(a string) error {
		c, err := net.Dial("tcp", a)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		for i := range 2 {
			fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
			if err != nil {
				return fmt.Errorf("request %d: %w", i, err)
			}
			_, _ = io.ReadAll(resp.Body)
		}
		return nil
	}},
	{"scope: path decoded, raw_path and query raw", func(a string) error {
		_, body, err := exchange(a, "GET /scope/caf%C3%A9/x%2Fy?q=%20a&b HTTP/1.1\r\nHost: example.com\r\nX-Two: 1\r\n\r\n", "GET")
		if err != nil {
			return err
		}
		var s struct {
			Path, RawPath, QueryString, Type, Method, Scheme string
			HTTPVersion                                      string `json:"http_version"`
			RawPathJ                                         string `json:"raw_path"`
			Query                                            string `json:"query_string"`
			Headers                                          [][2]string
		}
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			return fmt.Errorf("%q: %w", body, err)
		}
		hasHost := false
		for _, h := range s.Headers {
			hasHost = hasHost || h == [2]string{"host", "example.com"}
		}
		return want(s.Path == "/scope/café/x/y" && s.RawPathJ == "/scope/caf%C3%A9/x%2Fy" && s.Query == "q=%20a&b" && s.Type == "http" &&
			s.Method == "GET" && s.Scheme == "http" && s.HTTPVersion == "1.1" && hasHost, "scope %+v", s)
	}},
	{"lifespan state in the scope", func(a string) error {
		_, body, err := exchange(a, "GET /scope HTTP/1.1\r\nHost: x\r\n\r\n", "GET")
		return want(err == nil && strings.Contains(body, `"state": {"started": "yes"}`), "%q %v", body, err)
	}},
	{"http.disconnect when the client goes", func(a string) error {
		c, err := net.Dial("tcp", a)
		if err != nil {
			return err
		}
		_, before, _ := exchange(a, "GET /disconnects HTTP/1.1\r\nHost: x\r\n\r\n", "GET")
		fmt.Fprint(c, "GET /wait-disconnect HTTP/1.1\r\nHost: x\r\n\r\n")
		time.Sleep(200 * time.Millisecond) // time is the subject: the app must be waiting first
		c.Close()
		ok := herdtest.Poll(5*time.Second, func() bool {
			_, after, _ := exchange(a, "GET /disconnects HTTP/1.1\r\nHost: x\r\n\r\n", "GET")
			return after != before
		})
		return want(ok, "the app never heard http.disconnect")
	}},
	{"app error before the start is a 500", func(a string) error {
		resp, _, err := exchange(a, "GET /error HTTP/1.1\r\nHost: x\r\n\r\n", "GET")
		return want(err == nil && resp.StatusCode == 500, "%v %v", resp, err)
	}},
	{"app returning no response is a 500", func(a string) error {
		resp, _, err := exchange(a, "GET /noresponse HTTP/1.1\r\nHost: x\r\n\r\n", "GET")
		return want(err == nil && resp.StatusCode == 500, "%v %v", resp, err)
	}},
	{"WebSocket handshake, subprotocol, echo", func(a string) error {
		ws, err := rawWS(a, "/ws", "chat")
		if err != nil {
			return err
		}
		defer ws.c.Close()
		if ws.protocol != "chat" {
			return fmt.Errorf("subprotocol %q", ws.protocol)
		}
		ws.send(0x81, []byte("héllo"))
		op, p, err := ws.read()
		return want(err == nil && op == 1 && string(p) == "héllo", "%d %q %v", op, p, err)
	}},
	{"WebSocket binary and a fragmented message", func(a string) error {
		// Binary, not final; continuation, not final; continuation, final.
		op, p, err := wsExchange(a, wsFrame{0x02, "ab"}, wsFrame{0x00, "cd"}, wsFrame{0x80, "ef"})
		return want(err == nil && op == 2 && string(p) == "abcdef", "%d %q %v", op, p, err)
	}},
	{"WebSocket ping gets pong", func(a string) error {
		op, p, err := wsExchange(a, wsFrame{0x89, "p"})
		return want(err == nil && op == 0xA && string(p) == "p", "%d %q %v", op, p, err)
	}},
	{"WebSocket close handshake", func(a string) error {
		op, p, err := wsExchange(a, wsFrame{0x88, "\x03\xe8b"})
		return want(err == nil && op == 8 && len(p) >= 2 && binary.BigEndian.Uint16(p) == 1000, "%d %v %v", op, p, err)
	}},
	{"WebSocket app close with its code", func(a string) error {
		op, p, err := wsExchange(a, wsFrame{0x81, "close:4002"})
		return want(err == nil && op == 8 && len(p) >= 2 && binary.BigEndian.Uint16(p) == 4002, "%d %v %v", op, p, err)
	}},
	{"WebSocket unmasked client frame is a protocol error", func(a string) error {
		op, p, err := wsExchange(a, wsFrame{unmasked, "\x81\x01x"}) // no mask bit
		if err != nil {
			return nil // closed without a close frame: acceptable
		}
		return want(op == 8 && len(p) >= 2 && binary.BigEndian.Uint16(p) == 1002, "%d %v", op, p)
	}},
	{"WebSocket close before accept is a 403", func(a string) error {
		_, err := rawWS(a, "/ws-close", "")
		return want(err != nil && strings.Contains(err.Error(), "403"), "%v", err)
	}},
	{"websocket.http.response denial", func(a string) error {
		_, err := rawWS(a, "/ws-deny", "")
		return want(err != nil && strings.Contains(err.Error(), "403") && strings.Contains(err.Error(), "denied"), "%v", err)
	}},
}

// withWS runs fn on a raw WebSocket to the app's echo, and closes it.
func withWS(addr string, fn func(ws *rawWSConn) error) error {
	ws, err := rawWS(addr, "/ws", "")
	if err != nil {
		return err
	}
	defer ws.c.Close()
	return fn(ws)
}

// wsFrame is a frame a conformance case sends: its first byte (FIN and opcode) and payload,
// masked as a client must; with first == unmasked, payload is sent as it is.
type wsFrame struct {
	first   byte
	payload string
}

const unmasked = 0xff

// wsExchange opens a raw WebSocket to the app's echo, sends frames, and returns the first
// frame back.
func wsExchange(addr string, frames ...wsFrame) (byte, []byte, error) {
	ws, err := rawWS(addr, "/ws", "")
	if err != nil {
		return 0, nil, err
	}
	defer ws.c.Close()
	for _, f := range frames {
		if f.first == unmasked {
			_, _ = io.WriteString(ws.c, f.payload)
			continue
		}
		ws.send(f.first, []byte(f.payload))
	}
	return ws.read()
}

// rawWSConn is a WebSocket client written from RFC 6455 for the conformance cases.
type rawWSConn struct {
	c        net.Conn
	br       *bufio.Reader
	protocol string
}

func rawWS(addr, path, protocol string) (*rawWSConn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var k [16]byte
	_, _ = rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	req := "GET " + path + " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n"
	if protocol != "" {
		req += "Sec-WebSocket-Protocol: " + protocol + ", other\r\n"
	}
	fmt.Fprint(c, req+"\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil {
		c.Close()
		return nil, err
	}
	if resp.StatusCode != 101 {
		b, _ := io.ReadAll(resp.Body)
		c.Close()
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.Header.Get("Sec-Websocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		c.Close()
		return nil, fmt.Errorf("bad Sec-WebSocket-Accept %q", resp.Header.Get("Sec-Websocket-Accept"))
	}
	return &rawWSConn{c: c, br: br, protocol: resp.Header.Get("Sec-Websocket-Protocol")}, nil
}

// send writes one masked frame: first is the FIN bit and opcode.
func (w *rawWSConn) send(first byte, p []byte) {
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	b := []byte{first}
	switch {
	case len(p) < 126:
		b = append(b, 0x80|byte(len(p)))
	default:
		b = append(b, 0x80|126, byte(len(p)>>8), byte(len(p)))
	}
	b = append(b, mask[:]...)
	for i, c := range p {
		b = append(b, c^mask[i%4])
	}
	_, _ = w.c.Write(b)
}

// read returns the next frame's opcode and payload (servers do not mask).
func (w *rawWSConn) read() (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(w.br, h[:]); err != nil {
		return 0, nil, err
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(w.br, l[:]); err != nil {
			return 0, nil, err
		}
		n = int(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(w.br, l[:]); err != nil {
			return 0, nil, err
		}
		n = int(binary.BigEndian.Uint64(l[:]))
	}
	p := make([]byte, n)
	_, err := io.ReadFull(w.br, p)
	return h[0] & 0x0f, p, err
}
