package server

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// tlsEnvApp answers /echo with the request body and anything else with the environ values
// that TLS and HTTP/2 change, as JSON.
const tlsEnvApp = `import json

def app(environ, start_response):
    if environ["PATH_INFO"] == "/echo":
        body = environ["wsgi.input"].read()
    else:
        keys = ("wsgi.url_scheme", "HTTPS", "SERVER_PROTOCOL", "REQUEST_METHOD")
        body = json.dumps({k: environ.get(k) for k in keys}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
`

// testCert is a self-signed certificate for 127.0.0.1 and localhost, written as PEM files.
type testCert struct {
	certFile, keyFile string
	cert              *x509.Certificate
}

func newTestCert(t *testing.T, dir, name string) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "herd test " + name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c := testCert{certFile: filepath.Join(dir, name+".crt"), keyFile: filepath.Join(dir, name+".key"), cert: cert}
	writePEM(t, c.certFile, "CERTIFICATE", der)
	writePEM(t, c.keyFile, "PRIVATE KEY", keyDER)
	return c
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// installAs copies the pair over the files herd was started with, as a renewal does.
func (c testCert) installAs(t *testing.T, served testCert) {
	t.Helper()
	for src, dst := range map[string]string{c.certFile: served.certFile, c.keyFile: served.keyFile} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// tlsClient speaks only the given protocol (HTTP/2 or HTTP/1.1) over TLS, trusting certs.
func tlsClient(h2 bool, certs ...*x509.Certificate) *http.Client {
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	p := &http.Protocols{}
	p.SetHTTP2(h2)
	p.SetHTTP1(!h2)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, Protocols: p, MaxConnsPerHost: 1,
	}}
}

// h2cClient sends cleartext HTTP/2 with prior knowledge, as h2load does.
func h2cClient() *http.Client {
	p := &http.Protocols{}
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Protocols: p}}
}

// servedSerial is the serial of the certificate herd presents now, by a fresh handshake.
func servedSerial(t *testing.T, addr string) string {
	t.Helper()
	// Not verified: the test compares serials, and the served one may be any of several.
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
}

type envReply struct {
	Proto   string            // of the response, as the client saw it
	Body    string            // for /echo
	Environ map[string]string // for any other path
}

func request(t *testing.T, c *http.Client, method, url string, body []byte) envReply {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%s %s: %d %v %s", method, url, resp.StatusCode, err, b)
	}
	r := envReply{Proto: resp.Proto, Body: string(b)}
	if !strings.HasSuffix(url, "/echo") {
		if err := json.Unmarshal(b, &r.Environ); err != nil {
			t.Fatalf("%s %s: %v in %s", method, url, err, b)
		}
	}
	return r
}

func wantEnviron(t *testing.T, what string, got envReply, proto, scheme, https string) {
	t.Helper()
	e := got.Environ
	if got.Proto != proto || e["SERVER_PROTOCOL"] != proto || e["wsgi.url_scheme"] != scheme || e["HTTPS"] != https {
		t.Errorf("%s: response %s, environ %v; want %s, wsgi.url_scheme=%s, HTTPS=%q", what, got.Proto, e, proto, scheme, https)
	}
}

// TestHTTPSAndHTTP2 serves one app on --https and --http and checks it with Go's client,
// curl and h2load: the environ under h2 and HTTP/1.1 over TLS, a POST body echoed over h2,
// 1000 requests on 16 concurrent streams per connection, cleartext HTTP/2 refused without
// --h2c, and the certificate renewed by SIGHUP and by herd reload, a bad one keeping the old.
func TestHTTPSAndHTTP2(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "envapp.py"), []byte(tlsEnvApp), 0o644); err != nil {
		t.Fatal(err)
	}
	served := newTestCert(t, dir, "served")
	first := served.cert
	renewed := newTestCert(t, dir, "renewed")
	env := isolatedRegistry(t)
	httpsAddr := herdtest.FreeAddr(t)
	h := herdtest.Start(t, herdtest.Options{Dir: dir, Env: env, Args: []string{
		"envapp:app", "--workers", "1", "--https", httpsAddr, "--cert", served.certFile, "--key", served.keyFile,
	}})
	h.WaitReady(1, 30*time.Second)
	base := "https://" + httpsAddr

	t.Run("go client", func(t *testing.T) {
		h2 := tlsClient(true, first)
		wantEnviron(t, "GET over h2", request(t, h2, "GET", base+"/env", nil), "HTTP/2.0", "https", "on")
		wantEnviron(t, "POST over h2", request(t, h2, "POST", base+"/env", []byte("x")), "HTTP/2.0", "https", "on")
		body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB: many DATA frames
		if got := request(t, h2, "POST", base+"/echo", body); got.Body != string(body) || got.Proto != "HTTP/2.0" {
			t.Errorf("POST echo over h2: %s, %d bytes back, want the %d sent", got.Proto, len(got.Body), len(body))
		}
		h1 := tlsClient(false, first)
		wantEnviron(t, "HTTP/1.1 over TLS", request(t, h1, "GET", base+"/env", nil), "HTTP/1.1", "https", "on")
		wantEnviron(t, "plain HTTP/1.1", request(t, herdtest.Client(), "GET", h.URL+"/env", nil), "HTTP/1.1", "http", "")
	})

	t.Run("h2c is off by default", func(t *testing.T) {
		resp, err := h2cClient().Get(h.URL + "/env")
		if err == nil {
			resp.Body.Close()
			t.Fatalf("cleartext HTTP/2 without --h2c: %s %d, want a failure", resp.Proto, resp.StatusCode)
		}
	})

	t.Run("curl", func(t *testing.T) {
		curl := herdtest.RequireTool(t, "curl", "curl")
		for _, c := range []struct{ flag, version, proto string }{{"--http2", "2", "HTTP/2.0"}, {"--http1.1", "1.1", "HTTP/1.1"}} {
			out, err := exec.Command(curl, "-sS", c.flag, "--cacert", served.certFile, "-w", "\n%{http_version}", base+"/env").Output()
			if err != nil {
				t.Fatalf("curl %s: %v", c.flag, err)
			}
			b, version, _ := strings.Cut(string(out), "\n")
			var e map[string]string
			if err := json.Unmarshal([]byte(b), &e); err != nil {
				t.Fatalf("curl %s: %v in %q", c.flag, err, out)
			}
			wantEnviron(t, "curl "+c.flag, envReply{Proto: c.proto, Environ: e}, c.proto, "https", "on")
			if version != c.version {
				t.Errorf("curl %s: HTTP version %s, want %s", c.flag, version, c.version)
			}
		}
	})

	t.Run("h2load", func(t *testing.T) {
		h2load := herdtest.RequireTool(t, "h2load", "nghttp2-client")
		out, err := exec.Command(h2load, "-n", "1000", "-c", "4", "-m", "16", base+"/").CombinedOutput()
		if err != nil {
			t.Fatalf("h2load: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "Application protocol: h2") ||
			!regexp.MustCompile(`requests: 1000 total, 1000 started, 1000 done, 1000 succeeded, 0 failed, 0 errored`).Match(out) {
			t.Fatalf("h2load, 4 connections of 16 streams: want 1000 succeeded over h2:\n%s", out)
		}
	})

	t.Run("certificate reload", func(t *testing.T) {
		want := func(what string, serial *big.Int) {
			t.Helper()
			if got := servedSerial(t, httpsAddr); got != serial.Text(16) {
				t.Fatalf("%s: serves serial %s, want %s", what, got, serial.Text(16))
			}
		}
		want("at start", first.SerialNumber)
		from := len(h.Events())
		renewed.installAs(t, served)
		h.Signal(syscall.SIGHUP)
		if _, _, ok := h.WaitEvent(from, 20*time.Second, herdtest.IsMsg("TLS certificate reloaded")); !ok {
			t.Fatal("no reload of the certificate after SIGHUP")
		}
		want("after SIGHUP", renewed.cert.SerialNumber)
		wantEnviron(t, "GET over h2 after the renewal", request(t, tlsClient(true, renewed.cert), "GET", base+"/env", nil), "HTTP/2.0", "https", "on")

		// A half-written certificate, then one whose key is another's: the old one serves on.
		from = len(h.Events())
		if err := os.WriteFile(served.certFile, []byte("-----BEGIN CERTIFICATE-----\nMIIB"), 0o600); err != nil {
			t.Fatal(err)
		}
		h.Signal(syscall.SIGHUP)
		if _, _, ok := h.WaitEvent(from, 20*time.Second, herdtest.IsMsg("TLS certificate reload failed: the old certificate stays in use")); !ok {
			t.Fatal("a bad certificate on SIGHUP: no error logged")
		}
		want("after SIGHUP with a bad certificate", renewed.cert.SerialNumber)
		other := newTestCert(t, dir, "other")
		renewed.installAs(t, served)
		if err := os.WriteFile(served.keyFile, mustRead(t, other.keyFile), 0o600); err != nil {
			t.Fatal(err)
		}
		r := herdtest.Run(t, dir, env, "reload")
		if r.Code == 0 || !strings.Contains(r.Stderr, "private key does not match public key") || !strings.Contains(r.Stderr, "old certificate stays in use") {
			t.Fatalf("herd reload with a mismatched key: exit %d, %q; want a failure naming the mismatch", r.Code, r.Stderr)
		}
		want("after herd reload with a mismatched key", renewed.cert.SerialNumber)

		// herd reload renews the certificate as SIGHUP does.
		other.installAs(t, served)
		if r := herdtest.Run(t, dir, env, "reload"); r.Code != 0 {
			t.Fatalf("herd reload: exit %d, %q", r.Code, r.Stderr)
		}
		want("after herd reload", other.cert.SerialNumber)
	})
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestH2C: with --h2c the --http listener takes cleartext HTTP/2 with prior knowledge (Go's
// client and h2load) and HTTP/1.1 alike.
func TestH2C(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "envapp.py"), []byte(tlsEnvApp), 0o644); err != nil {
		t.Fatal(err)
	}
	h := herdtest.Start(t, herdtest.Options{Dir: dir, Args: []string{"envapp:app", "--workers", "1", "--h2c"}})
	h.WaitReady(1, 30*time.Second)
	wantEnviron(t, "h2c", request(t, h2cClient(), "GET", h.URL+"/env", nil), "HTTP/2.0", "http", "")
	if got := request(t, h2cClient(), "POST", h.URL+"/echo", []byte("hello h2c")); got.Body != "hello h2c" {
		t.Errorf("POST echo over h2c: %q", got.Body)
	}
	wantEnviron(t, "HTTP/1.1 next to h2c", request(t, herdtest.Client(), "GET", h.URL+"/env", nil), "HTTP/1.1", "http", "")
	h2load := herdtest.RequireTool(t, "h2load", "nghttp2-client")
	out, err := exec.Command(h2load, "-n", "200", "-c", "2", "-m", "8", h.URL+"/").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "200 succeeded, 0 failed") {
		t.Fatalf("h2load over h2c: %v\n%s", err, out)
	}
}

// TestH2CJudgesHTTP1AsHTTP: with --h2c, HTTP/1 requests on the --http listener get the
// checks and limits of the plain --http path (once a head checker in front of net/http,
// now the same h1 server): every request-smuggling shape and oversized head of the
// hostile suite is refused with the same status and a close, the unambiguous ones are
// answered as framed, no request hidden behind a refused one reaches the app, and the
// listener still speaks cleartext HTTP/2.
func TestH2CJudgesHTTP1AsHTTP(t *testing.T) {
	countFile := filepath.Join(t.TempDir(), "count")
	if err := os.WriteFile(countFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h := herdtest.Start(t, herdtest.Options{Dir: testAppsDir(t), Env: []string{"HERD_HOSTILE_COUNT=" + countFile},
		Args: []string{"hostileapp:app", "--workers", "1", "--access-log", "off", "--h2c"}})
	h.WaitReady(1, 60*time.Second)

	for _, tc := range smugglingCases() {
		if strings.HasPrefix(tc.raw, "PRI * HTTP/2.0") {
			continue // h2c's to serve here
		}
		statuses, bodies, closed, err := sendSmuggle(h.Addr, tc)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if wrong := judgeSmuggle(tc, statuses, bodies, closed); wrong != "" {
			t.Errorf("%s: %s", tc.name, wrong)
		}
	}
	for _, tc := range hugeHeaderCases() {
		if status, err := sendHead(h.Addr, tc.head); err != nil || status != tc.status {
			t.Errorf("%s: got %d (%v), want %d", tc.name, status, err, tc.status)
		}
	}
	if b, err := os.ReadFile(countFile); err != nil || len(b) != 0 {
		t.Errorf("hidden requests reached the app (%v):\n%s", err, b)
	}
	if got := request(t, h2cClient(), "POST", h.URL+"/echo", []byte("h2c")); got.Proto != "HTTP/2.0" || got.Body != "h2c" {
		t.Errorf("h2c beside them: %s %q", got.Proto, got.Body)
	}
}

// TestHTTPSConfigErrors: a TLS setup that cannot work stops herd before it serves anything,
// with an error that names what to fix.
func TestHTTPSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	one, two := newTestCert(t, dir, "one"), newTestCert(t, dir, "two")
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"no cert or key", []string{"--https", "ADDR"}, []string{"cert: missing: --https needs --cert", "key: missing: --https needs --key"}},
		{"cert without https", []string{"--cert", one.certFile, "--key", one.keyFile}, []string{"cert: given without --https", "key: given without --https"}},
		{"unreadable cert", []string{"--https", "ADDR", "--cert", filepath.Join(dir, "none.crt"), "--key", one.keyFile}, []string{"tls: load --cert", "none.crt: no such file"}},
		{"mismatched key", []string{"--https", "ADDR", "--cert", one.certFile, "--key", two.keyFile}, []string{"private key does not match public key"}},
		{"herd check: mismatched key", []string{"--https", "ADDR", "--cert", two.certFile, "--key", one.keyFile}, []string{"private key does not match public key"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr := herdtest.FreeAddr(t)
			command := "serve"
			if strings.HasPrefix(c.name, "herd check: ") {
				command = "check"
			}
			args := []string{command, "app:app", "--http", herdtest.FreeAddr(t)}
			for _, a := range c.args {
				args = append(args, strings.ReplaceAll(a, "ADDR", addr))
			}
			r := herdtest.Run(t, "", nil, args...)
			if r.Code == 0 {
				t.Fatalf("exit 0, want a failure")
			}
			for _, w := range c.want {
				if !strings.Contains(r.Stderr, w) {
					t.Errorf("stderr does not say %q:\n%s", w, r.Stderr)
				}
			}
			if strings.Contains(r.Stderr, "herd is starting") {
				t.Errorf("herd started despite the error:\n%s", r.Stderr)
			}
		})
	}
}
