package h1

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"

	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
	"github.com/rs/zerolog"
)

// start serves h on a loopback port and returns its address; the server closes at the end.
func start(t *testing.T, h http.Handler, tweak ...func(*Server)) (*Server, string) {
	t.Helper()
	s := &Server{Handler: h, Log: zerolog.Nop(), HeaderTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second,
		Limits: Limits{RequestLine: 4094, Fields: 100, FieldSize: 8190}}
	for _, f := range tweak {
		f(s)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		_ = s.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, ln.Addr().String()
}

// exchange writes raw on a new connection and reads until the server closes it or the
// deadline passes.
func exchange(t *testing.T, addr, raw string, wait time.Duration) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	b, _ := io.ReadAll(c)
	return string(b)
}

func echo(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("X-Method", r.Method)
	w.Header().Set("X-Path", r.URL.Path)
	w.Header().Set("X-Query", r.URL.RawQuery)
	w.Header().Set("X-Host", r.Host)
	w.Header().Set("X-Len", strconv.FormatInt(r.ContentLength, 10))
	_, _ = w.Write(body)
}

func TestKeepAliveAndPipelining(t *testing.T) {
	_, addr := start(t, http.HandlerFunc(echo))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	// Three requests in one write: answered in order on the same connection.
	_, _ = io.WriteString(c, "GET /a?x=1 HTTP/1.1\r\nHost: h1\r\n\r\n"+
		"POST /b HTTP/1.1\r\nHost: h2\r\nContent-Length: 5\r\n\r\nhello"+
		"POST /c HTTP/1.1\r\nHost: h3\r\nTransfer-Encoding: chunked\r\n\r\n3;ext\r\nabc\r\n2\r\nde\r\n0\r\nT: v\r\n\r\n")
	for _, want := range []struct{ path, body, host, length string }{{"/a", "", "h1", "0"}, {"/b", "hello", "h2", "5"}, {"/c", "abcde", "h3", "-1"}} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || resp.Header.Get("X-Path") != want.path || string(body) != want.body ||
			resp.Header.Get("X-Host") != want.host || resp.Header.Get("X-Len") != want.length || resp.Close {
			t.Fatalf("%s: %d %v %q", want.path, resp.StatusCode, resp.Header, body)
		}
		if resp.Header.Get("Date") == "" || resp.ContentLength != int64(len(want.body)) {
			t.Fatalf("%s: no Date or no length: %v", want.path, resp.Header)
		}
	}
}

func TestHTTP10(t *testing.T) {
	_, addr := start(t, http.HandlerFunc(echo))
	got := exchange(t, addr, "GET /x HTTP/1.0\r\n\r\n", 2*time.Second)
	if !strings.HasPrefix(got, "HTTP/1.1 200 OK\r\n") || strings.Contains(got, "Connection: keep-alive") {
		t.Fatalf("HTTP/1.0 answer:\n%s", got)
	}
	// Keep-alive asked for: kept, and said so.
	got = exchange(t, addr, "GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /y HTTP/1.0\r\n\r\n", 2*time.Second)
	if strings.Count(got, "HTTP/1.1 200 OK") != 2 || !strings.Contains(got, "Connection: keep-alive") {
		t.Fatalf("HTTP/1.0 keep-alive:\n%s", got)
	}
}

func TestRefusedHeads(t *testing.T) {
	var mu sync.Mutex
	var refused []int
	_, addr := start(t, http.HandlerFunc(echo), func(s *Server) {
		s.OnRefused = func(_ string, status int, _ string) {
			mu.Lock()
			refused = append(refused, status)
			mu.Unlock()
		}
	})
	for raw, status := range map[string]string{
		"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc": "400",
		"GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n c\r\n\r\n":                                         "400",
		"GET /" + strings.Repeat("a", 5000) + " HTTP/1.1\r\nHost: x\r\n\r\n":                      "414",
		"GET / HTTP/1.1\r\nHost: x\r\nA: " + strings.Repeat("a", 9000) + "\r\n\r\n":               "431",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n":                  "501",
		"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n":                                                    "400",
	} {
		got := exchange(t, addr, raw, 2*time.Second)
		if !strings.HasPrefix(got, "HTTP/1.1 "+status+" ") || !strings.Contains(got, "Connection: close") {
			t.Errorf("%.40q: got\n%s", raw, got)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(refused) != 6 {
		t.Fatalf("OnRefused heard %v", refused)
	}
}

// A refused head that follows an answered one: the answer, then the refusal, in order.
func TestRefusalAfterPipelinedRequest(t *testing.T) {
	_, addr := start(t, http.HandlerFunc(echo))
	got := exchange(t, addr, "GET /ok HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n", 2*time.Second)
	first, second := strings.Index(got, "HTTP/1.1 200"), strings.Index(got, "HTTP/1.1 400")
	if first != 0 || second < 0 {
		t.Fatalf("got:\n%s", got)
	}
}

func TestHeaderTimeouts(t *testing.T) {
	_, addr := start(t, http.HandlerFunc(echo), func(s *Server) { s.HeaderTimeout = 300 * time.Millisecond })
	// The first head: silence is closed without an answer.
	if got := exchange(t, addr, "GET / HTTP/1.1\r\nHo", 3*time.Second); got != "" {
		t.Fatalf("first head timed out with an answer: %q", got)
	}
	// A later head that stalls hears 408.
	got := exchange(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHo", 3*time.Second)
	if !strings.HasPrefix(got, "HTTP/1.1 200") || !strings.Contains(got, "HTTP/1.1 408") {
		t.Fatalf("got:\n%s", got)
	}
}

func TestIdleTimeoutCloses(t *testing.T) {
	_, addr := start(t, http.HandlerFunc(echo), func(s *Server) { s.IdleTimeout = 200 * time.Millisecond })
	start := time.Now()
	got := exchange(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 3*time.Second)
	if !strings.HasPrefix(got, "HTTP/1.1 200") || time.Since(start) > 2*time.Second {
		t.Fatalf("idle connection not closed in time (%v):\n%s", time.Since(start), got)
	}
}

func TestExpectContinue(t *testing.T) {
	_, addr := start(t, http.HandlerFunc(echo))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("%q %v", line, err)
	}
	_, _ = br.ReadString('\n')
	_, _ = io.WriteString(c, "body")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(resp.Body); string(b) != "body" {
		t.Fatalf("%q", b)
	}
	// A handler that never reads: no 100, and the connection closes after the answer.
	_, addr2 := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", 413) }))
	got := exchange(t, addr2, "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n", 2*time.Second)
	if strings.Contains(got, "100 Continue") || !strings.HasPrefix(got, "HTTP/1.1 413") || !strings.Contains(got, "Connection: close\r\n") {
		t.Fatalf("got:\n%s", got)
	}
}

// TestUnreadBodySaysClose: a handler that answers without reading a body too long to
// discard (a 413) gets "Connection: close" in its head, so that no client sends its next
// request on a connection about to close; a short unread body is discarded and the
// connection kept, without that header.
func TestUnreadBodySaysClose(t *testing.T) {
	_, addr := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "too large", 413) }))
	for _, c := range []struct {
		length int
		closes bool
	}{{maxDiscard + 1, true}, {2 << 20, true}, {1000, false}} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		// The whole body goes, as a client that does not wait for the answer sends it.
		go func() {
			_, _ = fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", c.length)
			_, _ = conn.Write(make([]byte, c.length))
		}()
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%d bytes: %v", c.length, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 413 || resp.Close != c.closes {
			t.Errorf("%d-byte body unread: %d, Connection: close %v, want %v", c.length, resp.StatusCode, resp.Close, c.closes)
		}
		conn.Close()
	}
}

func TestHEADAndBodylessStatuses(t *testing.T) {
	_, addr := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(204)
			_, _ = w.Write([]byte("dropped"))
		case "/304":
			w.WriteHeader(304)
		default:
			w.Header().Set("Content-Length", "5")
			_, _ = w.Write([]byte("hello"))
		}
	}))
	got := exchange(t, addr, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET /204 HTTP/1.1\r\nHost: x\r\n\r\nGET /304 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 2*time.Second)
	if strings.Contains(got, "hello") || strings.Contains(got, "dropped") || !strings.Contains(got, "Content-Length: 5") ||
		!strings.Contains(got, "HTTP/1.1 204") || !strings.Contains(got, "HTTP/1.1 304") {
		t.Fatalf("got:\n%s", got)
	}
	if strings.Count(got, "Transfer-Encoding") != 0 {
		t.Fatalf("bodyless answers framed:\n%s", got)
	}
}

func TestStreamingAndLargeBodies(t *testing.T) {
	big := make([]byte, 3<<20)
	_, _ = rand.Read(big)
	sum := sha256.Sum256(big)
	firstRead := make(chan struct{})
	_, addr := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/stream":
			for i := range 3 {
				fmt.Fprintf(w, "part %d\n", i)
				w.(http.Flusher).Flush()
				if i == 0 {
					<-firstRead // the client has the flushed part before the handler goes on
				}
			}
		case "/big": // no length: goes out chunked once past what is held
			_, _ = w.Write(big)
		case "/echo-sum":
			h := sha256.New()
			n, _ := io.Copy(h, r.Body)
			fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
		}
	}))
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + addr + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	first, err := br.ReadString('\n')
	if err != nil || first != "part 0\n" || len(resp.TransferEncoding) == 0 {
		t.Fatalf("%q %v %v", first, err, resp.TransferEncoding)
	}
	close(firstRead)
	rest, _ := io.ReadAll(br)
	resp.Body.Close()
	if string(rest) != "part 1\npart 2\n" {
		t.Fatalf("%q", rest)
	}
	resp, err = client.Get("http://" + addr + "/big")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if sha256.Sum256(got) != sum {
		t.Fatalf("big body: %d bytes, wrong", len(got))
	}
	for _, chunked := range []bool{false, true} {
		var body io.Reader = strings.NewReader(string(big))
		if chunked {
			body = io.MultiReader(strings.NewReader(string(big))) // no length: chunked upload
		}
		resp, err = client.Post("http://"+addr+"/echo-sum", "application/octet-stream", body)
		if err != nil {
			t.Fatal(err)
		}
		got, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("%d %x", len(big), sum); string(got) != want {
			t.Fatalf("chunked=%v upload: %s", chunked, got)
		}
	}
}

func TestShortAndLongBodiesAgainstContentLength(t *testing.T) {
	_, addr := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		n, err := w.Write([]byte(r.URL.Path[1:]))
		if r.URL.Path == "/longer-than-ten" && (n != 10 || !errors.Is(err, http.ErrContentLength)) {
			panic(fmt.Sprintf("write past the length: %d %v", n, err))
		}
	}))
	// Short: the client must see the connection end, not a second answer.
	got := exchange(t, addr, "GET /short HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n", 2*time.Second)
	if strings.Count(got, "HTTP/1.1 200") != 1 {
		t.Fatalf("a short body kept the connection:\n%s", got)
	}
	got = exchange(t, addr, "GET /longer-than-ten HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 2*time.Second)
	if !strings.HasSuffix(got, "\r\n\r\nlonger-tha") {
		t.Fatalf("got:\n%s", got)
	}
}

func TestPanicsAndAborts(t *testing.T) {
	_, addr := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/abort" {
			w.Header().Set("Content-Length", "100")
			_, _ = w.Write([]byte("partial"))
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		panic("boom")
	}))
	if got := exchange(t, addr, "GET /boom HTTP/1.1\r\nHost: x\r\n\r\n", 2*time.Second); got != "" {
		t.Fatalf("panic before the head: %q", got)
	}
	got := exchange(t, addr, "GET /abort HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n", 2*time.Second)
	if !strings.HasSuffix(got, "partial") || strings.Count(got, "HTTP/1.1") != 1 {
		t.Fatalf("abort: %q", got)
	}
}

func TestReadFromUsesTheConnection(t *testing.T) {
	dir := t.TempDir()
	data := []byte(strings.Repeat("0123456789", 100000))
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, addr := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, path)
	}))
	resp, err := http.Get("http://" + addr + "/f")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != string(data) {
		t.Fatalf("file: %d bytes", len(got))
	}
	req, _ := http.NewRequest("GET", "http://"+addr+"/f", nil)
	req.Header.Set("Range", "bytes=10-19")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 206 || string(got) != "0123456789" {
		t.Fatalf("range: %d %q", resp.StatusCode, got)
	}
}

func TestShutdownWaitsForActiveAndClosesIdle(t *testing.T) {
	release := make(chan struct{})
	inSlow := make(chan struct{})
	s, addr := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(inSlow)
			<-release
		}
		_, _ = io.WriteString(w, "done")
	}))
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	_, _ = io.WriteString(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	idleBr := bufio.NewReader(idle)
	if resp, err := http.ReadResponse(idleBr, nil); err != nil || resp.StatusCode != 200 {
		t.Fatal(err)
	} else if b, _ := io.ReadAll(resp.Body); string(b) != "done" {
		t.Fatalf("%q", b)
	}
	slowDone := make(chan string, 1)
	go func() { slowDone <- exchange(t, addr, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n", 5*time.Second) }()
	<-inSlow
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	// The idle connection is closed at once.
	_ = idle.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := idleBr.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: %v", err)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned with a request in flight: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if got := <-slowDone; !strings.Contains(got, "Connection: close") || !strings.HasSuffix(got, "done") {
		t.Fatalf("in-flight answer:\n%s", got)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
}

func TestClientGone(t *testing.T) {
	seen := make(chan bool, 1)
	entered, left := make(chan struct{}), make(chan struct{})
	_, addr := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-left // the client leaves meanwhile
		gone := w.(interface{ ClientGone() bool }).ClientGone
		seen <- herdtest.Poll(5*time.Second, gone) // its FIN is on its way
	}))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	<-entered
	c.Close()
	close(left)
	if !<-seen {
		t.Fatal("a closed client is not gone")
	}
	_, addr = start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- w.(interface{ ClientGone() bool }).ClientGone()
	}))
	exchange(t, addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", time.Second)
	if <-seen {
		t.Fatal("a waiting client is gone")
	}
}

func TestTLSWithALPN(t *testing.T) {
	ts := httptest.NewUnstartedServer(nil) // only for its certificate
	ts.StartTLS()
	cert := ts.TLS.Certificates[0]
	pool := ts.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	ts.Close()
	var h2 sync.WaitGroup
	h2.Add(1)
	var h2proto string
	_, addr := startTLS(t, http.HandlerFunc(echo), &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}},
		map[string]func(*tls.Conn){"h2": func(c *tls.Conn) {
			h2proto = c.ConnectionState().NegotiatedProtocol
			c.Close()
			h2.Done()
		}})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Post("https://"+addr+"/x", "text/plain", strings.NewReader("over tls"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Proto != "HTTP/1.1" || string(body) != "over tls" {
		t.Fatalf("%s %q", resp.Proto, body)
	}
	// The TLS connection gets herd's head checks too.
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n")
	got, _ := io.ReadAll(conn)
	conn.Close()
	if !strings.HasPrefix(string(got), "HTTP/1.1 400") {
		t.Fatalf("smuggling shape over TLS: %q", got)
	}
	c2, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	h2.Wait()
	if h2proto != "h2" {
		t.Fatalf("h2 handed over as %q", h2proto)
	}
}

func startTLS(t *testing.T, h http.Handler, cfg *tls.Config, next map[string]func(*tls.Conn), tweak ...func(*Server)) (*Server, string) {
	t.Helper()
	s := &Server{Handler: h, Log: zerolog.Nop(), TLSConfig: cfg, NextProto: next, HeaderTimeout: 5 * time.Second}
	for _, f := range tweak {
		f(s)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.ServeTLS(ln) }()
	t.Cleanup(func() {
		_ = s.Close()
		<-done
	})
	return s, ln.Addr().String()
}

// The request a handler sees: what net/http would give it.
func TestRequestFields(t *testing.T) {
	got := make(chan *http.Request, 1)
	_, addr := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		la, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		r2 := r.Clone(context.Background())
		r2.RemoteAddr = r.RemoteAddr + " local=" + fmt.Sprint(la)
		got <- r2
	}))
	exchange(t, addr, "GET /caf%C3%A9/x%2Fy?q=1 HTTP/1.1\r\nHost: example.org:8080\r\nCookie: a=1\r\nCookie: b=2\r\nConnection: close\r\n\r\n", time.Second)
	r := <-got
	if r.URL.Path != "/café/x/y" || r.URL.RawPath != "/caf%C3%A9/x%2Fy" || r.URL.RawQuery != "q=1" || r.RequestURI != "/caf%C3%A9/x%2Fy?q=1" {
		t.Fatalf("URL %+v, RequestURI %q", r.URL, r.RequestURI)
	}
	if r.Host != "example.org:8080" || r.Header.Get("Host") != "" || len(r.Header["Cookie"]) != 2 || !r.Close {
		t.Fatalf("host %q, header %v, close %v", r.Host, r.Header, r.Close)
	}
	if !strings.Contains(r.RemoteAddr, "127.0.0.1:") || !strings.Contains(r.RemoteAddr, "local=127.0.0.1:") {
		t.Fatalf("addresses %q", r.RemoteAddr)
	}
	exchange(t, addr, "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", time.Second)
	if r = <-got; r.URL.Path != "*" {
		t.Fatalf("asterisk-form: %+v", r.URL)
	}
	exchange(t, addr, "GET http://other.example/p?x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", time.Second)
	if r = <-got; r.Host != "other.example" || r.URL.Path != "/p" {
		t.Fatalf("absolute-form: host %q url %+v", r.Host, r.URL)
	}
}

// A client that stops sending its body is dropped after BodyIdleTimeout; one that sends
// slowly but steadily gets its body through.
func TestBodyIdleTimeout(t *testing.T) {
	got := make(chan string, 2)
	_, addr := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		got <- fmt.Sprintf("%d %v", len(b), err != nil)
	}), func(s *Server) { s.BodyIdleTimeout = 300 * time.Millisecond })
	for _, chunked := range []bool{false, true} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if chunked {
			_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
		} else {
			_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
		}
		select {
		case g := <-got:
			if !strings.HasSuffix(g, " true") {
				t.Fatalf("chunked=%v: a stalled body read as %q", chunked, g)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("chunked=%v: a stalled body was not dropped", chunked)
		}
		c.Close()
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
	for _, b := range "hello" {
		time.Sleep(150 * time.Millisecond) // each part within the timeout, the whole beyond it
		_, _ = c.Write([]byte{byte(b)})
	}
	if g := <-got; g != "5 false" {
		t.Fatalf("a slow but steady body: %q", g)
	}
}

// TestPipelinedWhileHandling: a client pipelines its second request while the first is being
// handled. The second is read and answered at once after the first's answer, not left
// unnoticed until the idle timeout (the readiness of its bytes came before the read that
// follows the first answer began).
func TestPipelinedWhileHandling(t *testing.T) {
	first, second := make(chan struct{}), make(chan struct{})
	_, addr := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/1" {
			close(first)
			<-second                          // the client wrote /2 meanwhile
			time.Sleep(20 * time.Millisecond) // and the poller saw it: the subject of the test
		}
		_, _ = io.WriteString(w, r.URL.Path)
	}), func(s *Server) { s.IdleTimeout = 30 * time.Second })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	<-first // /1 is being handled when /2 comes
	if _, err := io.WriteString(c, "GET /2 HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	close(second)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	for _, want := range []string{"/1", "/2"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer to %s: %v", want, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != want {
			t.Fatalf("answer %q, want %q", b, want)
		}
	}
}

// TestSendTimeout: a client that stops reading its answer has its connection closed once
// SendTimeout passes without progress, and the handler's write fails (so a proxy frees
// what it holds for it); a client that reads slowly but steadily gets the whole answer,
// however much longer than SendTimeout it takes. On plain and TLS connections alike.
func TestSendTimeout(t *testing.T) {
	const size = 16 << 20 // far more than the sockets buffer
	const timeout = 300 * time.Millisecond
	for _, useTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", useTLS), func(t *testing.T) {
			wrote := make(chan error, 4)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := size
				if r.URL.Path == "/small" {
					n = 4 << 20
				}
				w.Header().Set("Content-Length", strconv.Itoa(n))
				_, err := w.Write(make([]byte, n))
				wrote <- err
			})
			dial := sendTimeoutServer(t, h, timeout, useTLS)

			stalled := dial()
			defer stalled.Close()
			if _, err := fmt.Fprintf(stalled, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			select {
			case err := <-wrote:
				if err == nil {
					t.Fatal("a write to a client that reads nothing succeeded")
				}
				if took := time.Since(start); took < timeout {
					t.Fatalf("the write failed after %v, before the send timeout", took)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the write to a client that reads nothing still blocks after 10 s")
			}
			_ = stalled.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.Copy(io.Discard, stalled); errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("the stalled connection was not closed: %v", err)
			}

			slow := dial()
			defer slow.Close()
			fmt.Fprintf(slow, "GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
			br := bufio.NewReader(slow)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			start = time.Now()
			n, err := readPaced(resp.Body)
			if err != nil || n != 4<<20 {
				t.Fatalf("a slow but steady reader got %d bytes in %v: %v", n, time.Since(start), err)
			}
			if err := <-wrote; err != nil {
				t.Fatalf("the slow reader's write: %v", err)
			}
		})
	}
}

// readPaced reads r to its end 64 KiB at a time, one read each 20 ms.
func readPaced(r io.Reader) (int64, error) {
	tick := time.NewTicker(20 * time.Millisecond) // the pace is the subject
	defer tick.Stop()
	buf := make([]byte, 64<<10)
	var n int64
	for {
		<-tick.C
		m, err := io.ReadFull(r, buf)
		n += int64(m)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// sendTimeoutServer serves h with SendTimeout, plain or over TLS, and returns a dialer of
// connections with a small receive buffer.
func sendTimeoutServer(t *testing.T, h http.Handler, timeout time.Duration, useTLS bool) func() net.Conn {
	t.Helper()
	var addr string
	var clientTLS *tls.Config
	if useTLS {
		ts := httptest.NewUnstartedServer(nil) // only for its certificate
		ts.StartTLS()
		cert := ts.TLS.Certificates[0]
		clientTLS = &tls.Config{RootCAs: ts.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs, ServerName: "127.0.0.1"}
		ts.Close()
		_, addr = startTLS(t, h, &tls.Config{Certificates: []tls.Certificate{cert}}, nil, func(s *Server) { s.SendTimeout = timeout })
	} else {
		_, addr = start(t, h, func(s *Server) { s.SendTimeout = timeout })
	}
	return func() net.Conn {
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if clientTLS != nil {
			c = tls.Client(c, clientTLS)
		}
		return c
	}
}
