package h1

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// dribble writes raw to c one byte at a time: the worst a client can cut its bytes up.
func dribble(c net.Conn, raw string) {
	for i := range len(raw) {
		if _, err := c.Write([]byte{raw[i]}); err != nil {
			return
		}
	}
}

// answer reads one response off br as "code body"; "" when the connection ended.
func answer(c net.Conn, br *bufio.Reader) string {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return ""
	}
	b, _ := io.ReadAll(resp.Body)
	return strconv.Itoa(resp.StatusCode) + " " + string(b)
}

// converse dribbles each part in turn on a new connection to addr and returns the answers:
// one read after each part but the last, then every answer until the server closes, the
// client's side half-closed so that it may. A part goes out only once the answer before it
// came, so that each is read as the server's next bytes.
func converse(t *testing.T, addr string, parts ...string) []string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	var got []string
	for i, part := range parts {
		dribble(c, part)
		if i < len(parts)-1 {
			got = append(got, answer(c, br))
		}
	}
	_ = c.(*net.TCPConn).CloseWrite()
	for a := answer(c, br); a != ""; a = answer(c, br) {
		got = append(got, a)
	}
	return got
}

func pathAndBody(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	_, _ = w.Write(append([]byte(r.URL.Path+":"), b...))
}

// TestH2CPreface: with H2C, a connection that opens with HTTP/2's preface (even one byte at
// a time) is handed over whole, the preface and the frames after it, and h1 answers nothing
// on it; without H2C, after a request, or cut short, the preface is refused with 400 as any
// head that is not HTTP/1.
func TestH2CPreface(t *testing.T) {
	preface := string(h2Preface)
	frames := "\x00\x00\x00\x04\x00\x00\x00\x00\x00" // an empty SETTINGS frame
	get := "GET /a HTTP/1.1\r\nHost: a\r\n\r\n"
	cases := []struct {
		name    string
		h2c     bool
		parts   []string // see converse
		handed  string   // what H2C reads of the connection
		answers []string // what h1 answers on it
	}{
		{"h2c", true, []string{preface + frames}, preface + frames, nil},
		{"h2c off", false, []string{preface + frames}, "", []string{"400 Bad Request\n"}},
		{"h2c, HTTP/1.1", true, []string{"GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"}, "", []string{"200 /a:"}},
		{"h2c, preface second", true, []string{get, preface}, "", []string{"200 /a:", "400 Bad Request\n"}},
		{"h2c, preface cut short", true, []string{preface[:20]}, "", []string{"400 Bad Request\n"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			handed := make(chan string, 1)
			_, addr := start(t, http.HandlerFunc(pathAndBody), func(s *Server) {
				if tc.h2c {
					s.H2C = func(c net.Conn) {
						defer c.Close()
						_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
						b, _ := io.ReadAll(c)
						handed <- string(b)
					}
				}
			})
			if got := converse(t, addr, tc.parts...); !slices.Equal(got, tc.answers) {
				t.Fatalf("h1 answered %q, want %q", got, tc.answers)
			}
			select {
			case got := <-handed:
				if got != tc.handed {
					t.Fatalf("H2C read %q, want %q", got, tc.handed)
				}
			default:
				if tc.handed != "" {
					t.Fatal("nothing was handed over")
				}
			}
		})
	}
}

// TestH2CByteByByte: on a listener that takes h2c, HTTP/1 requests are framed and judged as
// on any other (the head checker that once stood in front of net/http there had this
// test): requests sent a byte at a time on one connection are answered, a chunked one with
// extensions and trailers included, until a refused head, after which nothing is read.
func TestH2CByteByByte(t *testing.T) {
	_, addr := start(t, http.HandlerFunc(pathAndBody), func(s *Server) {
		s.Limits = Limits{RequestLine: 100, Fields: 10, FieldSize: 100}
		s.H2C = func(c net.Conn) { _ = c.Close() }
	})
	got := converse(t, addr,
		"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n",
		"POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
		"GET /c HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /d HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\nGET /never HTTP/1.1\r\nHost: a\r\n\r\n")
	if want := []string{"200 /a:abc", "200 /b:hello", "200 /c:", "400 Bad Request\n"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// chanListener is a net.Listener fed by hand, as herd's server feeds net/http.
type chanListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{} }

// TestH2CToNetHTTP: through H2C, a prior-knowledge HTTP/2 client is served by net/http's
// HTTP/2 server, and an HTTP/1.1 client on the same listener by h1. h1 reports the handed
// connection as hijacked: it is open still, and net/http reports it from then on.
func TestH2CToNetHTTP(t *testing.T) {
	ln := &chanListener{conns: make(chan net.Conn), done: make(chan struct{})}
	onlyH2C := &http.Protocols{}
	onlyH2C.SetUnencryptedHTTP2(true)
	h2 := &http.Server{Protocols: onlyH2C, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s by net/http", r.Proto)
	})}
	go func() { _ = h2.Serve(ln) }()
	t.Cleanup(func() { _ = h2.Close() })

	var mu sync.Mutex
	var states []http.ConnState
	_, addr := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s by h1", r.Proto)
	}), func(s *Server) {
		s.H2C = func(c net.Conn) {
			select {
			case ln.conns <- c:
			case <-ln.done:
				_ = c.Close()
			}
		}
		s.ConnState = func(_ net.Conn, st http.ConnState) {
			mu.Lock()
			states = append(states, st)
			mu.Unlock()
		}
	})

	h2c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Protocols: onlyH2C}}
	defer h2c.CloseIdleConnections()
	for _, tc := range []struct {
		client *http.Client
		want   string
	}{{h2c, "HTTP/2.0 by net/http"}, {&http.Client{Timeout: 10 * time.Second}, "HTTP/1.1 by h1"}} {
		resp, err := tc.client.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != tc.want {
			t.Fatalf("got %q, want %q", b, tc.want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(states) < 2 || states[0] != http.StateNew || states[1] != http.StateHijacked {
		t.Fatalf("h1 reported %v for the handed connection, want new, hijacked", states)
	}
}
