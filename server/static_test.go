package server

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
	"golang.org/x/sys/unix"
)

// staticTree is the files the static tests serve, with one file outside the served
// directory that no request may reach.
type staticTree struct {
	root   string // holds pub/ and secret.txt
	pub    string // the served directory
	big    []byte // pub/64k.bin
	secret string
}

const staticHello = "hello static\n"

func makeStaticTree(t *testing.T, root string) staticTree {
	t.Helper()
	st := staticTree{root: root, pub: filepath.Join(root, "pub"), big: make([]byte, 64<<10), secret: "the secret outside pub\n"}
	if _, err := rand.Read(st.big); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"pub/hello.txt":      staticHello,
		"pub/app.css":        "body { color: red }\n",
		"pub/app.css.gz":     "GZIP-BYTES-OF-APP-CSS",
		"pub/app.css.br":     "BROTLI-BYTES-OF-APP-CSS",
		"pub/only-gz.js":     "console.log(1)\n",
		"pub/only-gz.js.gz":  "GZIP-BYTES-OF-ONLY-GZ",
		"pub/sub/index.html": "<p>index</p>\n",
		"pub/page":           "<!DOCTYPE html><html><body>sniffed</body></html>\n",
		"pub/64k.bin":        string(st.big),
		"secret.txt":         st.secret,
		"outside/passwd.txt": st.secret,
		"media/media/m.txt":  "media file\n",
		"media/favicon.ico":  "ICO",
	}
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"pub/inside-link": "hello.txt",                    // stays inside: served
		"pub/escape":      "../secret.txt",                // leaves pub: refused
		"pub/escape-dir":  filepath.Join(root, "outside"), // a directory outside, by absolute path
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(st.pub, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	return st
}

// waitStaticSettled waits until every file under root last changed two seconds ago or more:
// the cache keeps no file changed more recently (a write in the same clock tick would not show
// in its times), and every request of the kept-in-memory run must find its file settled.
func waitStaticSettled(t *testing.T, root string) {
	t.Helper()
	herdtest.EventuallyNil(t, 10*time.Second, "the static files settled", func() error {
		return filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			var st unix.Stat_t
			if unix.Stat(path, &st) != nil {
				return nil // a link that leads nowhere: nothing to keep
			}
			if age := time.Since(time.Unix(st.Ctim.Unix())); age < 2*time.Second {
				return fmt.Errorf("%s changed %s ago", path, age)
			}
			return nil
		})
	})
}

// staticClient never asks for gzip by itself (Go's transport would, and would decode it).
func staticClient() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableCompression: true}}
}

type staticResponse struct {
	status int
	header http.Header
	body   string
}

func staticDo(t *testing.T, c *http.Client, method, url string, header ...string) staticResponse {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, url, err)
	}
	return staticResponse{resp.StatusCode, resp.Header, string(b)}
}

// rawStatic sends one request line as written over TCP (Go's client would clean the path)
// and returns the status and body.
func rawStatic(t *testing.T, addr, target string) (int, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: herd\r\nConnection: close\r\n\r\n", target); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestStaticFiles: --static served by the master, every behaviour through a real herd and
// real HTTP clients, once with every file read from disk and once with the small ones kept
// in memory (the default, once a file has not changed for two seconds).
func TestStaticFiles(t *testing.T) {
	t.Run("from disk", func(t *testing.T) {
		t.Parallel()
		testStaticFiles(t, makeStaticTree(t, t.TempDir()), false, "--static-cache", "0")
	})
	t.Run("kept in memory", func(t *testing.T) {
		t.Parallel()
		st := makeStaticTree(t, t.TempDir())
		waitStaticSettled(t, st.root)
		testStaticFiles(t, st, true)
	})
}

func testStaticFiles(t *testing.T, st staticTree, kept bool, extra ...string) {
	// Debian's interpreter by path: pyenv's python3 shim alone takes seconds on a busy machine.
	args := []string{"app:app", "--workers", "1", "--python", "/usr/bin/python3",
		"--static", "/static=" + st.pub, "--static", "/static/deep=" + filepath.Join(st.root, "media")}
	h := herdtest.Start(t, herdtest.Options{Admin: true, Args: append(args, extra...)})
	h.WaitReady(1, 60*time.Second)
	c := staticClient()
	u := h.URL + "/static/"

	var tag, lastMod string
	t.Run("GET headers and body", func(t *testing.T) {
		r := staticDo(t, c, "GET", u+"hello.txt")
		if r.status != 200 || r.body != staticHello {
			t.Fatalf("got %d %q", r.status, r.body)
		}
		tag, lastMod = r.header.Get("ETag"), r.header.Get("Last-Modified")
		want := map[string]string{"Content-Type": "text/plain; charset=utf-8", "Content-Length": fmt.Sprint(len(staticHello)), "Accept-Ranges": "bytes"}
		for k, v := range want {
			if got := r.header.Get(k); got != v {
				t.Errorf("%s: %q, want %q", k, got, v)
			}
		}
		if !strings.HasPrefix(tag, `"`) || lastMod == "" || r.header.Get("Vary") != "" {
			t.Errorf("ETag %q Last-Modified %q Vary %q", tag, lastMod, r.header.Get("Vary"))
		}
		if _, err := http.ParseTime(lastMod); err != nil {
			t.Errorf("Last-Modified %q: %v", lastMod, err)
		}
	})

	t.Run("HEAD", func(t *testing.T) {
		r := staticDo(t, c, "HEAD", u+"64k.bin")
		if r.status != 200 || r.body != "" || r.header.Get("Content-Length") != "65536" {
			t.Fatalf("got %d, %d bytes, Content-Length %q", r.status, len(r.body), r.header.Get("Content-Length"))
		}
	})

	t.Run("64 KiB whole", func(t *testing.T) {
		r := staticDo(t, c, "GET", u+"64k.bin")
		if r.status != 200 || r.body != string(st.big) || r.header.Get("Content-Type") != "application/octet-stream" {
			t.Fatalf("got %d, %d bytes, type %q", r.status, len(r.body), r.header.Get("Content-Type"))
		}
	})

	t.Run("conditional", func(t *testing.T) {
		earlier := time.Now().Add(-48 * time.Hour).UTC().Format(http.TimeFormat)
		cases := []struct {
			header []string
			status int
		}{
			{[]string{"If-None-Match", tag}, 304},
			{[]string{"If-None-Match", `"other", ` + tag}, 304},
			{[]string{"If-None-Match", "W/" + tag}, 304}, // weak comparison for GET
			{[]string{"If-None-Match", "*"}, 304},
			{[]string{"If-None-Match", `"other"`}, 200},
			{[]string{"If-Modified-Since", lastMod}, 304},
			{[]string{"If-Modified-Since", earlier}, 200},
			// If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2).
			{[]string{"If-None-Match", `"other"`, "If-Modified-Since", lastMod}, 200},
			{[]string{"If-Match", `"other"`}, 412},
			{[]string{"If-Match", tag}, 200},
			{[]string{"If-Unmodified-Since", earlier}, 412},
		}
		for _, cs := range cases {
			r := staticDo(t, c, "GET", u+"hello.txt", cs.header...)
			if r.status != cs.status {
				t.Errorf("%q: %d, want %d", cs.header, r.status, cs.status)
			}
			if r.status == 304 && (r.body != "" || r.header.Get("ETag") != tag) {
				t.Errorf("%q: 304 with body %q, ETag %q", cs.header, r.body, r.header.Get("ETag"))
			}
		}
	})

	t.Run("Range", func(t *testing.T) {
		n := len(staticHello)
		cases := []struct {
			rng, contentRange string
			status            int
			body              string
		}{
			{"bytes=0-4", fmt.Sprintf("bytes 0-4/%d", n), 206, "hello"},
			{"bytes=6-", fmt.Sprintf("bytes 6-%d/%d", n-1, n), 206, staticHello[6:]},
			{"bytes=-7", fmt.Sprintf("bytes %d-%d/%d", n-7, n-1, n), 206, staticHello[n-7:]},
			{"bytes=6-1000", fmt.Sprintf("bytes 6-%d/%d", n-1, n), 206, staticHello[6:]}, // end clipped
			{"bytes=100-200", fmt.Sprintf("bytes */%d", n), 416, ""},
			{"bytes=5-2", "", 416, ""}, // invalid (RFC 9110 14.1.1): refused, as nginx does
			{"bytes=x-y", "", 416, ""},
			{"lines=1-2", "", 200, staticHello}, // a unit herd does not know: ignored (RFC 9110 14.2)
		}
		for _, cs := range cases {
			r := staticDo(t, c, "GET", u+"hello.txt", "Range", cs.rng)
			if r.status != cs.status || r.header.Get("Content-Range") != cs.contentRange || (cs.status != 416 && r.body != cs.body) {
				t.Errorf("%s: %d %q %q, want %d %q %q", cs.rng, r.status, r.header.Get("Content-Range"), r.body, cs.status, cs.contentRange, cs.body)
			}
		}
		r := staticDo(t, c, "GET", u+"64k.bin", "Range", "bytes=1000-65535")
		if r.status != 206 || r.body != string(st.big[1000:]) {
			t.Errorf("64k tail: %d, %d bytes", r.status, len(r.body))
		}
		// If-Range: the range only while the file is the one the client has.
		if r := staticDo(t, c, "GET", u+"hello.txt", "Range", "bytes=0-4", "If-Range", tag); r.status != 206 || r.body != "hello" {
			t.Errorf("If-Range with the current tag: %d %q", r.status, r.body)
		}
		if r := staticDo(t, c, "GET", u+"hello.txt", "Range", "bytes=0-4", "If-Range", `"old"`); r.status != 200 || r.body != staticHello {
			t.Errorf("If-Range with an old tag: %d %q", r.status, r.body)
		}
	})

	t.Run("multiple ranges", func(t *testing.T) {
		r := staticDo(t, c, "GET", u+"64k.bin", "Range", "bytes=0-9,100-109,-5")
		mediaType, params, err := mime.ParseMediaType(r.header.Get("Content-Type"))
		if r.status != 206 || err != nil || mediaType != "multipart/byteranges" {
			t.Fatalf("%d %q %v", r.status, r.header.Get("Content-Type"), err)
		}
		mr := multipart.NewReader(strings.NewReader(r.body), params["boundary"])
		want := []struct {
			contentRange string
			body         []byte
		}{
			{"bytes 0-9/65536", st.big[0:10]},
			{"bytes 100-109/65536", st.big[100:110]},
			{"bytes 65531-65535/65536", st.big[65531:]},
		}
		for i, w := range want {
			part, err := mr.NextPart()
			if err != nil {
				t.Fatalf("part %d: %v", i, err)
			}
			b, _ := io.ReadAll(part)
			if part.Header.Get("Content-Range") != w.contentRange || !bytes.Equal(b, w.body) {
				t.Errorf("part %d: %q, %d bytes", i, part.Header.Get("Content-Range"), len(b))
			}
		}
		if _, err := mr.NextPart(); err != io.EOF {
			t.Errorf("more parts than asked: %v", err)
		}
	})

	t.Run("precompressed", func(t *testing.T) {
		cases := []struct {
			file, accept, encoding, body, vary string
		}{
			{"app.css", "gzip", "gzip", "GZIP-BYTES-OF-APP-CSS", "Accept-Encoding"},
			{"app.css", "gzip, deflate, br", "br", "BROTLI-BYTES-OF-APP-CSS", "Accept-Encoding"},
			{"app.css", "br;q=0.5, gzip", "gzip", "GZIP-BYTES-OF-APP-CSS", "Accept-Encoding"},
			{"app.css", "br;q=0, gzip;q=0.1", "gzip", "GZIP-BYTES-OF-APP-CSS", "Accept-Encoding"},
			{"app.css", "x-gzip", "gzip", "GZIP-BYTES-OF-APP-CSS", "Accept-Encoding"},
			{"app.css", "*", "br", "BROTLI-BYTES-OF-APP-CSS", "Accept-Encoding"},
			{"app.css", "*, br;q=0", "gzip", "GZIP-BYTES-OF-APP-CSS", "Accept-Encoding"},
			{"app.css", "deflate", "", "body { color: red }\n", ""}, // no coding herd has: as no Accept-Encoding
			{"app.css", "", "", "body { color: red }\n", ""},        // no coding accepted: no probe, no Vary
			{"only-gz.js", "br", "", "console.log(1)\n", "Accept-Encoding"},
			{"only-gz.js", "br, gzip", "gzip", "GZIP-BYTES-OF-ONLY-GZ", "Accept-Encoding"},
			{"hello.txt", "gzip, br", "", staticHello, ""}, // no sibling at all
		}
		for _, cs := range cases {
			var hdr []string
			if cs.accept != "" {
				hdr = []string{"Accept-Encoding", cs.accept}
			}
			r := staticDo(t, c, "GET", u+cs.file, hdr...)
			if r.status != 200 || r.header.Get("Content-Encoding") != cs.encoding || r.body != cs.body || r.header.Get("Vary") != cs.vary {
				t.Errorf("%s with %q: %d encoding %q vary %q body %q", cs.file, cs.accept, r.status, r.header.Get("Content-Encoding"), r.header.Get("Vary"), r.body)
			}
			if ct := r.header.Get("Content-Type"); (cs.file == "app.css" && ct != "text/css; charset=utf-8") || r.header.Get("Content-Length") != fmt.Sprint(len(cs.body)) {
				t.Errorf("%s with %q: type %q length %q", cs.file, cs.accept, ct, r.header.Get("Content-Length"))
			}
		}
		// Each representation has its own tag: a client holding the gzip one gets 304 only
		// for gzip.
		gz := staticDo(t, c, "GET", u+"app.css", "Accept-Encoding", "gzip")
		plain := staticDo(t, c, "GET", u+"app.css")
		if gz.header.Get("ETag") == plain.header.Get("ETag") {
			t.Errorf("gzip and identity share the ETag %s", gz.header.Get("ETag"))
		}
		if r := staticDo(t, c, "GET", u+"app.css", "Accept-Encoding", "gzip", "If-None-Match", gz.header.Get("ETag")); r.status != 304 || r.header.Get("Vary") != "Accept-Encoding" {
			t.Errorf("gzip revalidation: %d, Vary %q", r.status, r.header.Get("Vary"))
		}
		if r := staticDo(t, c, "GET", u+"app.css", "If-None-Match", gz.header.Get("ETag")); r.status != 200 {
			t.Errorf("the gzip tag revalidated the identity file: %d", r.status)
		}
	})

	t.Run("content type sniffed without extension", func(t *testing.T) {
		r := staticDo(t, c, "GET", u+"page")
		if r.status != 200 || r.header.Get("Content-Type") != "text/html; charset=utf-8" {
			t.Fatalf("%d %q", r.status, r.header.Get("Content-Type"))
		}
	})

	t.Run("not a file: the app answers", func(t *testing.T) {
		for _, p := range []string{"/static/missing.txt", "/static/sub/", "/static/sub", "/static", "/static/", "/staticfoo", "/static/hello.txt/x"} {
			r := staticDo(t, c, "GET", h.URL+p)
			if r.status != 404 || r.body != "Not Found\n" { // the example app's 404
				t.Errorf("%s: %d %q, want the app's 404", p, r.status, r.body)
			}
		}
		// Other methods go to the app too, even on a file.
		if r := staticDo(t, c, "POST", u+"hello.txt"); r.status != 404 || r.body != "Not Found\n" {
			t.Errorf("POST: %d %q", r.status, r.body)
		}
		// Outside every prefix: the app, unchanged.
		if r := staticDo(t, c, "GET", h.URL+"/"); r.status != 200 || r.body != "Hello from herd!\n" {
			t.Errorf("/: %d %q", r.status, r.body)
		}
	})

	t.Run("longest prefix wins", func(t *testing.T) {
		if r := staticDo(t, c, "GET", u+"deep/favicon.ico"); r.status != 200 || r.body != "ICO" {
			t.Errorf("%d %q", r.status, r.body)
		}
	})

	t.Run("symlinks", func(t *testing.T) {
		if r := staticDo(t, c, "GET", u+"inside-link"); r.status != 200 || r.body != staticHello {
			t.Errorf("a link inside the directory: %d %q", r.status, r.body)
		}
		for _, p := range []string{"escape", "escape-dir/passwd.txt"} {
			// herd's own 404 (http.Error: nosniff), not the app's.
			if r := staticDo(t, c, "GET", u+p); r.status != 404 || strings.Contains(r.body, "secret") || r.header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("%s: %d %q %q, want herd's own 404", p, r.status, r.header, r.body)
			}
		}
	})

	t.Run("special file", func(t *testing.T) {
		// A FIFO would block an open for reading: refused at once.
		if r := staticDo(t, c, "GET", u+"fifo"); r.status != 404 {
			t.Errorf("fifo: %d %q", r.status, r.body)
		}
	})

	t.Run("escapes in the raw request line", func(t *testing.T) {
		cases := []struct {
			target string
			status int
		}{
			{"/static/../secret.txt", 400},
			{"/static/../../../../etc/passwd", 400},
			{"/static/%2e%2e/secret.txt", 400},
			{"/static/%2E%2e/secret.txt", 400},
			{"/static/..%2fsecret.txt", 400},
			{"/static/sub/..%2f..%2fsecret.txt", 400},
			{"/static/./hello.txt", 400},
			{"/static/hello.txt%00.css", 400},
			{"/static/%00", 400},
			{"http://herd/static/../secret.txt", 400},
			{"/static/..\\secret.txt", 404}, // a backslash is a name character here: no such file, the app's 404
			{"/static//" + strings.TrimPrefix(st.root, "/") + "/secret.txt", 404},
			{"/static/hello.txt", 200},
			{"/static//hello.txt", 200},
			{"/static/hello.txt?v=1", 200},     // a cache-busting query names the same file
			{"/static/hello.txt?../../x", 200}, // the query is not part of the path
		}
		for _, cs := range cases {
			status, body := rawStatic(t, h.Addr, cs.target)
			if status != cs.status || strings.Contains(body, "secret") {
				t.Errorf("GET %s: %d %q, want %d", cs.target, status, body, cs.status)
			}
		}
	})

	t.Run("access log", func(t *testing.T) {
		_, _, ok := h.WaitEvent(0, 10*time.Second, func(e herdtest.Event) bool {
			return e.Str("component") == "access" && e.Str("path") == "/static/64k.bin" && e.Int("status") == 200 && e.Int("bytes") == 65536
		})
		if !ok {
			t.Fatal("no access line for a static file")
		}
	})

	// The answers above are the same either way; the metrics say which path gave them.
	files, bytes := adminCounter(t, h.AdminURL, "herd_static_kept_files"), adminCounter(t, h.AdminURL, "herd_static_kept_bytes")
	t.Logf("kept: %.0f files, %.0f bytes", files, bytes)
	if kept && (files < 5 || bytes < 64<<10) {
		t.Errorf("%.0f files (%.0f bytes) kept in memory after serving 64k.bin and a dozen small files", files, bytes)
	}
	if !kept && files != 0 {
		t.Errorf("--static-cache 0 kept %.0f files", files)
	}
}

// TestStaticUWSGIIni: a uWSGI .ini's static-map (relative to its chdir, and a single file)
// and static-map2 run as they are, with --static-follow-symlinks given on top.
func TestStaticUWSGIIni(t *testing.T) {
	dir := herdtest.CopyExample(t)
	st := makeStaticTree(t, dir)
	addr := herdtest.FreeAddr(t)
	ini := filepath.Join(dir, "app.ini")
	text := fmt.Sprintf(`[uwsgi]
chdir = %s
module = app:app
http = %s
processes = 1
master = true
static-map = /assets=pub
static-map = /favicon.ico=%s/media/favicon.ico
static-map2 = /media=%s/media
`, dir, addr, dir, dir)
	if err := os.WriteFile(ini, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	h := herdtest.Start(t, herdtest.Options{Dir: dir, Listen: addr, Args: []string{"--ini", ini, "--static-follow-symlinks", "--python", "/usr/bin/python3"}})
	h.WaitReady(1, 60*time.Second)
	c := staticClient()
	cases := []struct {
		path   string
		status int
		body   string
	}{
		{"/assets/hello.txt", 200, staticHello},
		{"/favicon.ico", 200, "ICO"},
		{"/favicon.ico/x", 404, "Not Found\n"},
		{"/media/m.txt", 200, "media file\n"},
		{"/assets/escape", 200, st.secret}, // followed, as asked
		{"/assets/nope", 404, "Not Found\n"},
		{"/", 200, "Hello from herd!\n"},
	}
	for _, cs := range cases {
		r := staticDo(t, c, "GET", h.URL+cs.path)
		if r.status != cs.status || r.body != cs.body {
			t.Errorf("%s: %d %q, want %d %q", cs.path, r.status, r.body, cs.status, cs.body)
		}
	}
	// Following symlinks never lets ".." through.
	if status, body := rawStatic(t, addr, "/assets/../secret.txt"); status != 400 {
		t.Errorf("../ with --static-follow-symlinks: %d %q", status, body)
	}
}

// adminCounter reads one counter of the admin server's /metrics.
func adminCounter(t *testing.T, adminURL, name string) float64 {
	t.Helper()
	resp, err := http.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}
