package server

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
	"github.com/herd-server/herd/protocol"
)

// uwsgiNginxConf puts nginx in front of herd's uwsgi sockets as deployments do:
//   - /app/ goes to the Unix socket with Debian's uwsgi_params only; herd's --mount /app
//     moves the prefix from PATH_INFO to SCRIPT_NAME (uWSGI's --manage-script-name);
//   - /tcp/ goes to the loopback TCP socket the old way: uwsgi_param SCRIPT_NAME and
//     uwsgi_modifier1 30, which asks the server to strip it from PATH_INFO. This one also
//     sends UWSGI_SCHEME https, which herd honours (it sets only wsgi.url_scheme);
//   - .../stream locations turn uwsgi_buffering off, so that parts go out as they come.
//
// Every location also sends the vars that tell uWSGI what code to load: herd must drop them.
const uwsgiNginxConf = `user root;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    client_max_body_size 64m;
    server {
        listen %[2]s;
        location /app/ { %[3]s }
        location /app/stream { %[3]s uwsgi_buffering off; }
        location /tcp/ { %[4]s }
        location /tcp/stream { %[4]s uwsgi_buffering off; }
    }
}
`

const evilParams = `uwsgi_param UWSGI_FILE %[1]s/evil.py; uwsgi_param UWSGI_SCRIPT evil;
    uwsgi_param UWSGI_MODULE evil; uwsgi_param UWSGI_CALLABLE app; uwsgi_param UWSGI_CHDIR %[1]s;
    uwsgi_param UWSGI_PYHOME %[1]s;`

// evilPy proves by its marker file whether anything imported it.
const evilPy = `import os
open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "imported"), "w").close()
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"evil\n"]
`

// TestNginxUwsgiPass: real nginx -> herd's uwsgi sockets (Unix and loopback TCP) ->
// workers, for a GET, a 10 MiB POST, a chunked upload, a SCRIPT_NAME mount both ways and
// a streamed response; the UWSGI_* vars nginx sends are not obeyed.
func TestNginxUwsgiPass(t *testing.T) {
	herdtest.RequireTool(t, "nginx", "nginx")
	herdtest.RequireRoot(t, "nginx runs with user root and binds as root here")
	dir := t.TempDir()
	evilDir := filepath.Join(dir, "evil")
	if err := os.Mkdir(evilDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(evilDir, "evil.py"), []byte(evilPy), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "herd.sock")
	tcpAddr := herdtest.FreeAddr(t)
	h := herdtest.Start(t, herdtest.Options{Dir: testdataDir(t), Args: []string{
		"--workers", "2", "--mount", "/app=uwsgiapp:app",
		"--uwsgi-socket", "unix:" + sock, "--uwsgi-socket", tcpAddr,
	}})
	h.WaitReady(2, 30*time.Second)
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("uwsgi socket: %v, mode %v; want 0660", err, fi.Mode().Perm())
	}

	evil := fmt.Sprintf(evilParams, evilDir)
	unixLoc := fmt.Sprintf("include /etc/nginx/uwsgi_params; %s uwsgi_pass unix:%s;", evil, sock)
	tcpLoc := fmt.Sprintf("include /etc/nginx/uwsgi_params; %s uwsgi_param SCRIPT_NAME /tcp; uwsgi_modifier1 30; uwsgi_param UWSGI_SCHEME https; uwsgi_pass %s;", evil, tcpAddr)
	base := runNginx(t, func(dir, listen string) string {
		return fmt.Sprintf(uwsgiNginxConf, dir, listen, unixLoc, tcpLoc)
	})

	c := herdtest.Client()
	for _, fe := range []struct{ name, prefix, scheme string }{
		{"unix socket, --mount", "/app", "http"},
		{"tcp socket, modifier1 30", "/tcp", "https"},
	} {
		t.Run(fe.name, func(t *testing.T) {
			url := base + fe.prefix
			env := getEnv(t, c, url+"/env?a=1")
			want := map[string]string{
				"SCRIPT_NAME": fe.prefix, "PATH_INFO": "/env", "QUERY_STRING": "a=1",
				"REQUEST_URI": fe.prefix + "/env?a=1", "REQUEST_METHOD": "GET",
				"REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": fe.scheme,
			}
			checkEnv(t, "GET", env, want, "CONTENT_LENGTH", "CONTENT_TYPE")
			if status, body := herdtest.Get(t, c, url+"/"); status != 200 || body != "hello\n" {
				t.Errorf("GET %s/: %d %q", fe.prefix, status, body)
			}
			postSha(t, c, url+"/sha", 10<<20, false)
			postSha(t, c, url+"/sha", 3<<20, true)
			chunkedEnv(t, c, url+"/env")
			streamed(t, c, url+"/stream", dir)
		})
	}
	// herd's own HTTP front end applies the same mount.
	if env := getEnv(t, c, h.URL+"/app/env"); env["SCRIPT_NAME"] != "/app" || env["PATH_INFO"] != "/env" {
		t.Errorf("HTTP with --mount: SCRIPT_NAME %q PATH_INFO %q", env["SCRIPT_NAME"], env["PATH_INFO"])
	}
	if status, _ := herdtest.Get(t, c, h.URL+"/elsewhere"); status != http.StatusNotFound {
		t.Errorf("HTTP outside the mount: %d, want 404", status)
	}
	if _, err := os.Stat(filepath.Join(evilDir, "imported")); err == nil {
		t.Errorf("evil.py was imported: a UWSGI_* var from nginx was obeyed")
	}
}

func getEnv(t *testing.T, c *http.Client, url string) map[string]string {
	t.Helper()
	status, body := herdtest.Get(t, c, url)
	var env map[string]string
	if err := json.Unmarshal([]byte(body), &env); status != 200 || err != nil {
		t.Fatalf("GET %s: %d %q (%v)", url, status, body, err)
	}
	return env
}

// checkEnv compares the wanted vars and asserts that absent ones and every UWSGI_* var are
// not in the app's environ.
func checkEnv(t *testing.T, what string, env, want map[string]string, absent ...string) {
	t.Helper()
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s: %s = %q, want %q", what, k, env[k], v)
		}
	}
	for k := range env {
		if strings.HasPrefix(k, "UWSGI_") {
			t.Errorf("%s: %s reached the app", what, k)
		}
	}
	for _, k := range absent {
		if v, ok := env[k]; ok {
			t.Errorf("%s: %s = %q, want it absent", what, k, v)
		}
	}
}

// postSha uploads size random bytes (chunked: without a length, so nginx de-chunks it) and
// checks the app got them all, intact.
func postSha(t *testing.T, c *http.Client, url string, size int, chunked bool) {
	t.Helper()
	data := make([]byte, size)
	_, _ = rand.Read(data)
	sum := sha256.Sum256(data)
	var body io.Reader = bytes.NewReader(data)
	if chunked {
		body = io.MultiReader(body) // hides the length: Go sends it chunked
	}
	req, err := http.NewRequest(http.MethodPost, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %d bytes (chunked %v): %v", size, chunked, err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if want := fmt.Sprintf("%d %s", size, hex.EncodeToString(sum[:])); resp.StatusCode != 200 || string(got) != want {
		t.Errorf("POST %d bytes (chunked %v): %d %q, want %q", size, chunked, resp.StatusCode, got, want)
	}
}

// chunkedEnv: for a chunked upload nginx sends CONTENT_LENGTH and HTTP_TRANSFER_ENCODING;
// the app sees the length only.
func chunkedEnv(t *testing.T, c *http.Client, url string) {
	t.Helper()
	resp, err := c.Post(url, "text/plain", io.MultiReader(strings.NewReader("0123456789")))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		t.Fatal(err)
	}
	checkEnv(t, "chunked POST", env, map[string]string{"CONTENT_LENGTH": "10", "CONTENT_TYPE": "text/plain"}, "HTTP_TRANSFER_ENCODING")
}

// streamed reads the first part of a response before the app may produce the second.
func streamed(t *testing.T, c *http.Client, url, dir string) {
	t.Helper()
	gate := filepath.Join(dir, fmt.Sprintf("gate-%d", time.Now().UnixNano()))
	resp, err := c.Get(url + "?gate=" + gate)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	first, err := br.ReadString('\n')
	if err != nil || first != "first\n" {
		t.Fatalf("stream: first part %q, %v", first, err)
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "second\n" {
		t.Errorf("stream: rest %q, %v; want \"second\\n\" (the first part must arrive before the gate opens)", rest, err)
	}
}

// TestUwsgiSocketActivation: a passed socket named "uwsgi" serves the uwsgi front end, the
// others HTTP, as docs/deployment.md says.
func TestUwsgiSocketActivation(t *testing.T) {
	httpSock, httpAddr := passedListener(t)
	uwsgiSock, uwsgiAddr := passedListener(t)
	opts := herdtest.Activation([]*os.File{httpSock, uwsgiSock}, []string{"web", "uwsgi"})
	opts.Listen = httpAddr
	opts.Dir = testdataDir(t)
	opts.Args = []string{"uwsgiapp:app", "--workers", "1"}
	h := herdtest.Start(t, opts)
	h.WaitReady(1, 30*time.Second)

	if status, body := herdtest.Get(t, herdtest.Client(), h.URL+"/"); status != 200 || body != "hello\n" {
		t.Errorf("HTTP on the passed socket: %d %q", status, body)
	}
	answer := uwsgiRequest(t, uwsgiAddr, "REQUEST_METHOD", "GET", "PATH_INFO", "/", "CONTENT_LENGTH", "")
	if !strings.HasPrefix(answer, "HTTP/1.1 200 OK\r\n") || !strings.HasSuffix(answer, "\r\n\r\nhello\n") {
		t.Errorf("uwsgi on the passed socket: %q", answer)
	}
}

// uwsgiRequest sends one uwsgi request (vars as key, value pairs) and reads the answer to
// the server's close. addr is host:port or unix:PATH.
func uwsgiRequest(t *testing.T, addr string, kv ...string) string {
	t.Helper()
	vars := make([]protocol.Var, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		vars = append(vars, protocol.Var{Key: kv[i], Value: kv[i+1]})
	}
	packet, err := protocol.AppendPacket(nil, protocol.ModifierPlain, vars)
	if err != nil {
		t.Fatal(err)
	}
	network := "tcp"
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, addr = "unix", path
	}
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(packet); err != nil {
		t.Fatal(err)
	}
	answer, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("uwsgi request to %s: %v", addr, err)
	}
	return string(answer)
}
