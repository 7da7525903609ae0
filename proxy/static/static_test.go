package static

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
	"github.com/herd-server/herd/internal/listener"
)

func TestAcceptedEncodings(t *testing.T) {
	cases := []struct {
		header string
		want   []string
	}{
		{"", nil},
		{"identity", nil},
		{"deflate", nil},
		{"gzip", []string{"gzip"}},
		{"gzip, deflate, br", []string{"br", "gzip"}},
		{"gzip;q=1.0, br;q=0.5", []string{"gzip", "br"}},
		{"br;q=0, gzip", []string{"gzip"}},
		{"GZIP ; Q=0.2 , Br;q=0.1", []string{"gzip", "br"}},
		{"x-gzip", []string{"gzip"}},
		{"*", []string{"br", "gzip"}},
		{"*;q=0.5, gzip", []string{"gzip", "br"}},
		{"*, gzip;q=0", []string{"br"}},
		{"*;q=0", nil},
		{"gzip;q=bogus", nil},
		{"gzip;q=2", nil},
	}
	for _, c := range cases {
		var got []string
		for _, e := range acceptedEncodings(c.header) {
			got = append(got, e.name)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: got %q, want %q", c.header, got, c.want)
		}
	}
}

func TestMatch(t *testing.T) {
	dir := t.TempDir()
	next := http.NotFoundHandler()
	h, err := New([]Dir{{Prefix: "/static", Path: dir}, {Prefix: "/static/img", Path: dir}, {Prefix: "/f.ico", Path: filepath.Join(dir, "f.ico")}}, Options{}, next)
	if err == nil {
		t.Fatal("a file mount whose file is missing was taken")
	}
	if err := os.WriteFile(filepath.Join(dir, "f.ico"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h, err = New([]Dir{{Prefix: "/static", Path: dir}, {Prefix: "/static/img", Path: dir}, {Prefix: "/f.ico", Path: filepath.Join(dir, "f.ico")}}, Options{}, next)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	cases := []struct {
		path, prefix, rel string
	}{
		{"/static/a.css", "/static", "a.css"},
		{"/static//a.css", "/static", "a.css"},
		{"/static/img/x.png", "/static/img", "x.png"},
		{"/static/imgx/y", "/static", "imgx/y"},
		{"/static", "/static", ""},
		{"/staticx", "", ""},
		{"/f.ico", "/f.ico", "f.ico"},
		{"/f.ico/x", "", ""},
		{"/", "", ""},
	}
	for _, c := range cases {
		m, rel, ok := h.match(c.path)
		prefix := ""
		if ok {
			prefix = m.prefix
		}
		if prefix != c.prefix || rel != c.rel {
			t.Errorf("%s: %q %q, want %q %q", c.path, prefix, rel, c.prefix, c.rel)
		}
	}
}

// TestDirectorySwap: a deployment that flips a "current" symlink to a new release is
// served from the new one within a second or so, without a restart.
func TestDirectorySwap(t *testing.T) {
	for _, cache := range []int64{0, 1 << 20} {
		t.Run(fmt.Sprintf("cache %d", cache), func(t *testing.T) { testDirectorySwap(t, cache) })
	}
}

func testDirectorySwap(t *testing.T, cacheBytes int64) {
	base := t.TempDir()
	for _, rel := range []string{"r1", "r2"} {
		if err := os.MkdirAll(filepath.Join(base, rel), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(base, rel, "v.txt"), []byte(rel), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	current := filepath.Join(base, "current")
	if err := os.Symlink("r1", current); err != nil {
		t.Fatal(err)
	}
	settle(t, filepath.Join(current, "v.txt")) // kept from the first request on, when there is a cache
	h, err := New([]Dir{{Prefix: "/s", Path: current}}, Options{CacheBytes: cacheBytes}, http.NotFoundHandler())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	get := func() string {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/s/v.txt", nil))
		return w.Body.String()
	}
	for range 2 {
		if got := get(); got != "r1" {
			t.Fatalf("before the flip: %q", got)
		}
	}
	if files, _ := h.Kept(); (files == 1) != (cacheBytes > 0) {
		t.Fatalf("%d files kept with a cache of %d bytes", files, cacheBytes)
	}
	// Flip atomically, as deploy tools do: a new link renamed over the old.
	if err := os.Symlink("r2", current+".new"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(current+".new", current); err != nil {
		t.Fatal(err)
	}
	herdtest.Eventually(t, 10*time.Second, "the new release served after the flip", func() bool { return get() == "r2" })
}

// benchFiles makes a directory with a 1 KiB and a 64 KiB file.
func benchFiles(b *testing.B) string {
	dir := b.TempDir()
	for name, size := range map[string]int{"1k.txt": 1 << 10, "64k.txt": 64 << 10} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(strings.Repeat("x", size)), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return dir
}

// BenchmarkServeHTTP is the handler alone (open, stat, headers, copy into a recorder): the
// master's cost per file before the network, read from disk and kept in memory.
func BenchmarkServeHTTP(b *testing.B) {
	dir := benchFiles(b)
	old := racyWindow
	racyWindow = 0 // the files do not change: kept from the first request
	defer func() { racyWindow = old }()
	for _, cache := range []int64{0, DefaultCacheBytes} {
		h, err := New([]Dir{{Prefix: "/static", Path: dir}}, Options{CacheBytes: cache}, http.NotFoundHandler())
		if err != nil {
			b.Fatal(err)
		}
		defer h.Close()
		benchServeHTTP(b, h, map[bool]string{false: "disk", true: "kept"}[cache > 0])
	}
}

func benchServeHTTP(b *testing.B, h *Handler, how string) {
	for _, name := range []string{"1k.txt", "64k.txt"} {
		b.Run(how+"/"+name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/static/"+name, nil)
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatal(w.Code)
				}
			}
		})
	}
}

// BenchmarkLoopback is a real net/http server on loopback, one keep-alive client: the whole
// path, sendfile included, that `go run ./bench -apps static1k,static64k` loads with wrk.
func BenchmarkLoopback(b *testing.B) {
	dir := benchFiles(b)
	h, err := New([]Dir{{Prefix: "/static", Path: dir}}, Options{}, http.NotFoundHandler())
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	defer func() { _ = srv.Close(); <-served }()
	for _, name := range []string{"1k.txt", "64k.txt"} {
		b.Run(name, func(b *testing.B) {
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			reqLine := fmt.Sprintf("GET /static/%s HTTP/1.1\r\nHost: bench\r\n\r\n", name)
			for b.Loop() {
				if _, err := io.WriteString(conn, reqLine); err != nil {
					b.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || n == 0 {
					b.Fatal(resp.StatusCode, n)
				}
				b.SetBytes(n)
			}
		})
	}
}

// TestSeekSaver: the large-file path (above smallFile) through ServeContent's seeks: the
// type sniffed from the first bytes, then the whole body, a range, and several ranges.
func TestSeekSaver(t *testing.T) {
	dir := t.TempDir()
	body := "<!DOCTYPE html>" + strings.Repeat("0123456789", 1000)
	if err := os.WriteFile(filepath.Join(dir, "page"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := New([]Dir{{Prefix: "/s", Path: dir}}, Options{}, http.NotFoundHandler())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	get := func(rng string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/s/page", nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		h.ServeHTTP(w, req)
		return w
	}
	if w := get(""); w.Code != 200 || w.Body.String() != body || w.Header().Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("whole: %d %q, %d bytes", w.Code, w.Header().Get("Content-Type"), w.Body.Len())
	}
	if w := get("bytes=9000-9009"); w.Code != 206 || w.Body.String() != body[9000:9010] {
		t.Errorf("range: %d %q", w.Code, w.Body.String())
	}
	if w := get("bytes=-5"); w.Code != 206 || w.Body.String() != body[len(body)-5:] {
		t.Errorf("suffix range: %d %q", w.Code, w.Body.String())
	}
	if w := get("bytes=0-1,600-601"); w.Code != 206 || !strings.Contains(w.Body.String(), "\r\n\r\n<!") || !strings.Contains(w.Body.String(), "\r\n\r\n"+body[600:602]) {
		t.Errorf("multipart: %d %q", w.Code, w.Body.String())
	}
}

// spyConn notes what reaches the TCP connection's ReadFrom, the door to sendfile.
type spyConn struct {
	*net.TCPConn
	sendfileable chan bool
}

func (c spyConn) ReadFrom(r io.Reader) (int64, error) {
	src := r
	if lr, ok := r.(*io.LimitedReader); ok {
		src = lr.R
	}
	_, isFile := src.(syscall.Conn) // what net's sendFile looks for
	select {
	case c.sendfileable <- isFile:
	default:
	}
	return c.TCPConn.ReadFrom(r)
}

type spyListener struct {
	net.Listener
	sendfileable chan bool
}

func (l spyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return spyConn{c.(*net.TCPConn), l.sendfileable}, nil
}

// TestSendfileThroughWrappers: a large file's body reaches the TCP connection's ReadFrom as
// a file, through every wrapper herd puts around the connection (the PROXY-protocol
// listener) and around the ResponseWriter (the access-log recorder). A wrapper that hid
// ReadFrom would make net/http copy through a buffer instead.
func TestSendfileThroughWrappers(t *testing.T) {
	dir := t.TempDir()
	big := strings.Repeat("x", 64<<10)
	if err := os.WriteFile(filepath.Join(dir, "big.txt"), []byte(big), 0o644); err != nil {
		t.Fatal(err)
	}
	served := make(chan int64, 4)
	h, err := New([]Dir{{Prefix: "/s", Path: dir}}, Options{OnServed: func(_ *http.Request, _ time.Time, _ int, n int64) { served <- n }}, http.NotFoundHandler())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, withProxyProtocol := range []bool{false, true} {
		t.Run(fmt.Sprintf("PROXY protocol %v", withProxyProtocol), func(t *testing.T) {
			tcp, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			spy := spyListener{tcp, make(chan bool, 1)}
			var ln net.Listener = spy
			if withProxyProtocol {
				ln = &listener.ProxyListener{Listener: spy, HeaderTimeout: 10 * time.Second}
			}
			srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
			done := make(chan struct{})
			go func() {
				defer close(done)
				_ = srv.Serve(ln)
			}()
			defer func() { _ = srv.Close(); <-done }()

			conn, err := net.Dial("tcp", tcp.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if withProxyProtocol {
				_, _ = io.WriteString(conn, "PROXY TCP4 192.0.2.1 192.0.2.2 1111 80\r\n")
			}
			_, _ = io.WriteString(conn, "GET /s/big.txt HTTP/1.1\r\nHost: t\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != big {
				t.Fatalf("%d, %d bytes", resp.StatusCode, len(body))
			}
			select {
			case isFile := <-spy.sendfileable:
				if !isFile {
					t.Fatal("the connection's ReadFrom got a reader that is not a file: no sendfile")
				}
			default:
				t.Fatal("the body never reached the connection's ReadFrom: a wrapper hides it")
			}
			if n := <-served; n != int64(len(big)) {
				t.Fatalf("the recorder counted %d bytes", n)
			}
		})
	}
}

// countedFiles is a bound of descriptors for TestFilesBound.
type countedFiles struct{ max, inUse int }

func (f *countedFiles) Take(n int) bool {
	if f.inUse+n > f.max {
		return false
	}
	f.inUse += n
	return true
}

func (f *countedFiles) Give(n int) { f.inUse -= n }

// TestFilesBound: an answer counts its descriptors against Options.Files while it is
// served, and gives them back; without room the request gets 503 and opens nothing.
func TestFilesBound(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("a file"), 0o644); err != nil {
		t.Fatal(err)
	}
	files := &countedFiles{max: 2}
	var refused []error
	h, err := New([]Dir{{Prefix: "/s", Path: dir}}, Options{Files: files, Refused: func(_ *http.Request, why error) { refused = append(refused, why) }},
		http.NotFoundHandler())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	get := func() int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/s/a.txt", nil))
		return rec.Code
	}
	if code := get(); code != 200 || files.inUse != 0 {
		t.Fatalf("with room: %d, %d descriptors still counted", code, files.inUse)
	}
	files.inUse = 1 // another answer holds one
	if code := get(); code != 503 || len(refused) != 1 || !errors.Is(refused[0], ErrNoDescriptor) || files.inUse != 1 {
		t.Fatalf("without room: %d, refused %v, %d counted", code, refused, files.inUse)
	}
}
