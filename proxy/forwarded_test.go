package proxy

import (
	"net/http"
	"testing"
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
