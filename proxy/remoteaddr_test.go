package proxy

import (
	"net/http/httptest"
	"testing"
)

func TestRemoteAddrVarIndex(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("X-Forwarded-For", "203.0.113.7")
	trusted, _ := ParseTrustList([]string{"127.0.0.1"})
	for _, tc := range []struct{ remote, local, want string }{
		{"127.0.0.1:5000", "127.0.0.1:8000", "203.0.113.7"}, // a trusted proxy: the client it names
		{"192.0.2.1:5000", "127.0.0.1:8000", "192.0.2.1"},   // an untrusted peer: its own address
	} {
		vars := RequestVars(nil, r, ConnInfo{RemoteAddr: tc.remote, LocalAddr: tc.local, Trusted: trusted}, 0)
		if vars[remoteAddrVar].Key != "REMOTE_ADDR" || vars[remoteAddrVar].Value != tc.want {
			t.Fatalf("%s: vars[%d] = %v, want REMOTE_ADDR=%s", tc.remote, remoteAddrVar, vars[remoteAddrVar], tc.want)
		}
	}
}

// TestUnixPeerRemoteAddr: a client on a Unix socket has no address; REMOTE_ADDR is empty,
// as gunicorn and uWSGI give it, never Go's "@".
func TestUnixPeerRemoteAddr(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	vars := RequestVars(nil, r, ConnInfo{RemoteAddr: "@", LocalAddr: "/run/app.sock"}, 0)
	if v := vars[remoteAddrVar]; v.Value != "" {
		t.Fatalf("REMOTE_ADDR %q", v.Value)
	}
}
