package proxy

import (
	"bufio"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/herd-server/herd/protocol"
)

// FuzzRequestVars: any request net/http accepts translates into uwsgi vars that encode into a
// packet when they fit its 16-bit sizes (and fail to, with the handler's 431, only when they
// do not), decode back to the same values, name no variable twice, carry the method, path,
// query and every passed header unchanged, and, from an untrusted peer, no forwarding
// header nor a REMOTE_ADDR or scheme other than the socket's. Seeds:
// testdata/fuzz/FuzzRequestVars.
func FuzzRequestVars(f *testing.F) {
	f.Add("GET", "/caf%C3%A9/x", "a=1&b=%20", "X-Forwarded-For", "203.0.113.9", "Cookie", "a=1", false)
	f.Add("POST", "/", "", "Forwarded", `for="[2001:db8::1]:80";proto=https`, "Content-Type", "text/plain", true)
	f.Add("PUT", "/a%2Fb", "", "X-Forwarded-Proto", "https", "X_Forwarded_For", "1.2.3.4", false)
	f.Add("GET", "/"+strings.Repeat("a", 70000), "", "Accept", "*/*", "Host", "example.test", false)
	f.Fuzz(func(t *testing.T, method, path, query, name1, value1, name2, value2 string, trustPeer bool) {
		target := path
		if query != "" {
			target += "?" + query
		}
		raw := method + " " + target + " HTTP/1.1\r\nHost: example.test\r\n" +
			name1 + ": " + value1 + "\r\n" + name2 + ": " + value2 + "\r\n\r\n"
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return // the HTTP server refuses it before the proxy sees it
		}
		trust, _ := ParseTrustList([]string{"127.0.0.1"})
		info := ConnInfo{RemoteAddr: "192.0.2.1:5555", LocalAddr: "127.0.0.1:8000", Trusted: trust}
		if trustPeer {
			info.RemoteAddr = "127.0.0.1:5555"
		}
		vars := RequestVars(nil, r, info, 0)
		checkVars(t, r, vars, trustPeer)

		pkt, err := protocol.AppendPacket(nil, protocol.ModifierKeepAlive, vars)
		size := 0
		for _, v := range vars {
			size += 4 + len(v.Key) + len(v.Value)
		}
		if fits := size <= 0xffff; (err == nil) != fits {
			t.Fatalf("encode: err %v with a %d-byte vars block", err, size)
		}
		if err != nil {
			return
		}
		if len(pkt) != protocol.HeaderSize+size {
			t.Fatalf("packet of %d bytes for a %d-byte vars block", len(pkt), size)
		}
		got, err := protocol.DecodeVars(pkt[protocol.HeaderSize:])
		if err != nil {
			t.Fatalf("the packet does not decode: %v", err)
		}
		if len(got) != len(vars) {
			t.Fatalf("decoded %d vars, encoded %d", len(got), len(vars))
		}
		for i := range got {
			if got[i] != vars[i] {
				t.Fatalf("var %d: decoded %+v, encoded %+v", i, got[i], vars[i])
			}
		}
	})
}

// checkVars holds the translation to what the request said.
func checkVars(t *testing.T, r *http.Request, vars []protocol.Var, trusted bool) {
	t.Helper()
	env := map[string]string{}
	for _, v := range vars {
		if _, dup := env[v.Key]; dup {
			t.Fatalf("%s twice in %+v", v.Key, vars)
		}
		env[v.Key] = v.Value
	}
	for k, want := range map[string]string{
		"REQUEST_METHOD": r.Method, "PATH_INFO": r.URL.Path, "QUERY_STRING": r.URL.RawQuery,
		"REQUEST_URI": r.RequestURI, "HTTP_HOST": r.Host,
	} {
		if env[k] != want {
			t.Fatalf("%s = %q, want %q", k, env[k], want)
		}
	}
	for name, values := range r.Header {
		key, passed := cgiHeaderKey(name)
		if !passed || isForwardingHeader(name) && !trusted {
			continue
		}
		if got, ok := env[key]; !ok || len(values) == 1 && got != values[0] {
			t.Fatalf("header %s: %s = %q, want %q", name, key, got, values)
		}
	}
	if scheme := env["UWSGI_SCHEME"]; scheme != "http" && scheme != "https" {
		t.Fatalf("UWSGI_SCHEME %q", scheme)
	}
	if _, err := netip.ParseAddr(env["REMOTE_ADDR"]); err != nil {
		t.Fatalf("REMOTE_ADDR %q is no address", env["REMOTE_ADDR"])
	}
	if trusted {
		return
	}
	if env["REMOTE_ADDR"] != "192.0.2.1" || env["REMOTE_PORT"] != "5555" || env["UWSGI_SCHEME"] != "http" {
		t.Fatalf("untrusted peer: REMOTE_ADDR %q:%q scheme %q", env["REMOTE_ADDR"], env["REMOTE_PORT"], env["UWSGI_SCHEME"])
	}
	for k := range env {
		if strings.HasPrefix(k, "HTTP_X_FORWARDED_") || k == "HTTP_FORWARDED" || k == "HTTP_X_REAL_IP" || k == "HTTPS" {
			t.Fatalf("untrusted peer: %s reached the vars", k)
		}
	}
}
