package proxy

import (
	"net/http"
	"testing"

	"github.com/herd-server/herd/protocol"
)

func TestForwardedClient(t *testing.T) {
	trust, err := ParseTrustList([]string{"127.0.0.1", "10.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name           string
		headers        map[string]string
		client, scheme string
	}{
		{"no headers", nil, "", ""},
		{"one hop", map[string]string{"X-Forwarded-For": "203.0.113.9"}, "203.0.113.9", ""},
		{"client-written entries left of the proxy are not believed",
			map[string]string{"X-Forwarded-For": "1.2.3.4, 203.0.113.9"}, "203.0.113.9", ""},
		{"trusted proxies in the chain are skipped",
			map[string]string{"X-Forwarded-For": "203.0.113.9, 10.1.2.3"}, "203.0.113.9", ""},
		{"garbage stops the walk", map[string]string{"X-Forwarded-For": "203.0.113.9, unknown"}, "", ""},
		{"proto", map[string]string{"X-Forwarded-Proto": "HTTPS"}, "", "https"},
		{"odd proto ignored", map[string]string{"X-Forwarded-Proto": "gopher"}, "", ""},
		{"Forwarded wins over X-Forwarded-For",
			map[string]string{"Forwarded": `for=192.0.2.60;proto=https, for="[2001:db8::1]:80"`, "X-Forwarded-For": "9.9.9.9"},
			"2001:db8::1", "https"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tt.headers {
				h.Set(k, v)
			}
			client, scheme := forwardedClient(h, trust)
			if client != tt.client || scheme != tt.scheme {
				t.Fatalf("got (%q, %q), want (%q, %q)", client, scheme, tt.client, tt.scheme)
			}
		})
	}
	for _, bad := range []string{"10.0.0.300", "nonsense", "10.0.0.0/40"} {
		if _, err := ParseTrustList([]string{bad}); err == nil {
			t.Errorf("ParseTrustList(%q) accepted it", bad)
		}
	}
}

// TestUnixSocketPeerIsLocal: a peer on a Unix socket (nginx's proxy_pass to unix:PATH) is
// trusted as 127.0.0.1 is; a TCP peer is judged by its address, as before.
func TestUnixSocketPeerIsLocal(t *testing.T) {
	local, err := ParseTrustList([]string{"127.0.0.1", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	remoteOnly, err := ParseTrustList([]string{"10.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	get := func(vars []protocol.Var, key string) string {
		for _, v := range vars {
			if v.Key == key {
				return v.Value
			}
		}
		return ""
	}
	cases := []struct {
		name         string
		remote, addr string
		trust        *TrustList
		wantRemote   string
		wantScheme   string
	}{
		{"unix socket, local trusted", "@", "/run/herd/http.sock", local, "203.0.113.9", "https"},
		{"unix socket with a relative path", "", "app.sock", local, "203.0.113.9", "https"},
		{"unix socket, only a remote network trusted", "@", "/run/herd/http.sock", remoteOnly, "", "http"},
		{"tcp peer not trusted", "192.0.2.7:5000", "127.0.0.1:8000", local, "192.0.2.7", "http"},
		{"tcp loopback peer", "127.0.0.1:5000", "127.0.0.1:8000", local, "203.0.113.9", "https"},
	}
	for _, c := range cases {
		r, _ := http.NewRequest("GET", "http://example.com/", nil)
		r.RemoteAddr = c.remote
		r.Header.Set("X-Forwarded-For", "203.0.113.9")
		r.Header.Set("X-Forwarded-Proto", "https")
		vars := RequestVars(nil, r, ConnInfo{RemoteAddr: c.remote, LocalAddr: c.addr, Trusted: c.trust}, 0)
		if got, scheme := get(vars, "REMOTE_ADDR"), get(vars, "UWSGI_SCHEME"); got != c.wantRemote || scheme != c.wantScheme {
			t.Errorf("%s: REMOTE_ADDR %q scheme %q, want %q %q", c.name, got, scheme, c.wantRemote, c.wantScheme)
		}
	}
}
