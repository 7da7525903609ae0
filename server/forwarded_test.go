package server

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

func envWithHeaders(t *testing.T, url string, headers map[string]string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest("GET", url+"/env", nil)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := herdtest.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var env map[string]any
	if err := json.Unmarshal(body, &env); resp.StatusCode != 200 || err != nil {
		t.Fatalf("GET /env: %d %q (%v)", resp.StatusCode, body, err)
	}
	return env
}

// TestForwardedHeadersTrustedOnlyFromAllowedPeers: from a peer in --forwarded-allow-ips
// (loopback by default, as a local nginx is) X-Forwarded-For and -Proto set REMOTE_ADDR
// and wsgi.url_scheme; from any other peer they are stripped and change nothing.
func TestForwardedHeadersTrustedOnlyFromAllowedPeers(t *testing.T) {
	spoof := map[string]string{"X-Forwarded-For": "198.51.100.7, 203.0.113.9", "X-Forwarded-Proto": "https"}

	trusted := herdtest.Start(t, herdtest.Options{Dir: testAppsDir(t), Args: []string{"conformapp:application", "--workers", "1"}})
	trusted.WaitReady(1, 20*time.Second)
	env := envWithHeaders(t, trusted.URL, spoof)
	if env["REMOTE_ADDR"] != "203.0.113.9" || env["wsgi.url_scheme"] != "https" || env["HTTPS"] != "on" {
		t.Errorf("trusted peer: REMOTE_ADDR %v, scheme %v, HTTPS %v; want the forwarded client 203.0.113.9 over https",
			env["REMOTE_ADDR"], env["wsgi.url_scheme"], env["HTTPS"])
	}
	if env["HTTP_X_FORWARDED_FOR"] != "198.51.100.7, 203.0.113.9" {
		t.Errorf("trusted peer: HTTP_X_FORWARDED_FOR = %v, want the header as sent", env["HTTP_X_FORWARDED_FOR"])
	}
	env = envWithHeaders(t, trusted.URL, map[string]string{"Forwarded": `for="[2001:db8::1]:4711";proto=https`})
	if env["REMOTE_ADDR"] != "2001:db8::1" || env["wsgi.url_scheme"] != "https" {
		t.Errorf("Forwarded from a trusted peer: REMOTE_ADDR %v, scheme %v", env["REMOTE_ADDR"], env["wsgi.url_scheme"])
	}

	untrusted := herdtest.Start(t, herdtest.Options{Dir: testAppsDir(t), Args: []string{"conformapp:application", "--workers", "1", "--forwarded-allow-ips", "10.9.8.7,192.0.2.0/24"}})
	untrusted.WaitReady(1, 20*time.Second)
	env = envWithHeaders(t, untrusted.URL, spoof)
	if env["REMOTE_ADDR"] != "127.0.0.1" || env["wsgi.url_scheme"] != "http" {
		t.Errorf("untrusted peer: REMOTE_ADDR %v, scheme %v; want the socket's 127.0.0.1 over http", env["REMOTE_ADDR"], env["wsgi.url_scheme"])
	}
	for _, k := range []string{"HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTPS"} {
		if v, ok := env[k]; ok {
			t.Errorf("untrusted peer: %s = %v reached the app", k, v)
		}
	}
	// RFC 7239 and the other proxy headers are no way around it either.
	env = envWithHeaders(t, untrusted.URL, map[string]string{
		"Forwarded": `for="[2001:db8::1]:4711";proto=https`, "X-Real-Ip": "198.51.100.7",
		"X-Forwarded-Host": "evil.example", "X-Forwarded-Port": "443", "X-Forwarded-Ssl": "on", "X-Forwarded-Prefix": "/evil"})
	if env["REMOTE_ADDR"] != "127.0.0.1" || env["wsgi.url_scheme"] != "http" {
		t.Errorf("untrusted peer, Forwarded: REMOTE_ADDR %v, scheme %v; want 127.0.0.1 over http", env["REMOTE_ADDR"], env["wsgi.url_scheme"])
	}
	for _, k := range []string{"HTTP_FORWARDED", "HTTP_X_REAL_IP", "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_SSL", "HTTP_X_FORWARDED_PREFIX", "HTTPS"} {
		if v, ok := env[k]; ok {
			t.Errorf("untrusted peer: %s = %v reached the app", k, v)
		}
	}

	bad := herdtest.Start(t, herdtest.Options{Args: []string{"app:app", "--forwarded-allow-ips", "10.0.0.300"}})
	if code := bad.Wait(10 * time.Second); code != exitError {
		t.Fatalf("bad --forwarded-allow-ips: exit %d, want %d", code, exitError)
	}
	if out := bad.Output(); !strings.Contains(out, `forwarded-allow-ips: "10.0.0.300" is not an IP address, a CIDR prefix or *`) {
		t.Fatalf("bad --forwarded-allow-ips: output does not name the key and value:\n%s", out)
	}
}
