package proxy

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// TrustList is the set of peers (--forwarded-allow-ips) whose X-Forwarded-For,
// X-Forwarded-Proto and Forwarded headers herd believes. From any other peer those headers
// are stripped, so neither REMOTE_ADDR nor wsgi.url_scheme can be spoofed by a client, and
// the app never sees a forged value either.
type TrustList struct {
	all      bool
	prefixes []netip.Prefix
}

// ParseTrustList reads entries that are "*", an IP address or a CIDR prefix.
func ParseTrustList(entries []string) (*TrustList, error) {
	t := &TrustList{}
	for _, e := range entries {
		e = strings.TrimSpace(e)
		switch {
		case e == "*":
			t.all = true
		case strings.Contains(e, "/"):
			p, err := netip.ParsePrefix(e)
			if err != nil {
				return nil, fmt.Errorf("%q is not an IP address, a CIDR prefix or *", e)
			}
			t.prefixes = append(t.prefixes, p.Masked())
		default:
			a, err := netip.ParseAddr(e)
			if err != nil {
				return nil, fmt.Errorf("%q is not an IP address, a CIDR prefix or *", e)
			}
			t.prefixes = append(t.prefixes, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
		}
	}
	return t, nil
}

// Trusts reports whether headers from a peer at addr are believed.
func (t *TrustList) Trusts(addr netip.Addr) bool {
	if t == nil || !addr.IsValid() {
		return false
	}
	if t.all {
		return true
	}
	addr = addr.Unmap()
	for _, p := range t.prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// forwardedHeaders are the headers a proxy sets about the client; believed only from a
// trusted peer.
var forwardedHeaders = map[string]bool{
	"X-Forwarded-For": true, "X-Forwarded-Proto": true, "X-Forwarded-Host": true,
	"X-Forwarded-Port": true, "X-Forwarded-Ssl": true, "X-Real-Ip": true, "Forwarded": true,
}

// isForwardingHeader: one of forwardedHeaders, or any other X-Forwarded-* (X-Forwarded-Prefix,
// -Server, ...): apps and middleware such as werkzeug's ProxyFix read some of those too, so
// from an untrusted peer none of them passes.
//
// The names are compared without regard to case: Go's HTTP server leaves a name it cannot
// canonicalize (one holding a space, say "X-ForwArded-For ") as the client wrote it, and its
// variable would still begin with HTTP_X_FORWARDED_ (FuzzRequestVars found it; herd's own
// HTTP/1.1 parser refuses such names, the --h2c path through net/http took them).
func isForwardingHeader(name string) bool {
	if forwardedHeaders[name] {
		return true
	}
	if name == "" {
		return false
	}
	const prefix = "X-Forwarded-"
	if len(name) >= len(prefix) && strings.EqualFold(name[:len(prefix)], prefix) {
		return true
	}
	switch name[0] { // the rest only for names that could be one in another case
	case 'x', 'X', 'f', 'F':
		for k := range forwardedHeaders {
			if strings.EqualFold(name, k) {
				return true
			}
		}
	}
	return false
}

// forwardedClient returns the client address and scheme a trusted proxy reports, or ""
// where it reports none. With a chain of proxies the client is the rightmost address that
// is not itself a trusted proxy: entries left of it could have been written by the client.
func forwardedClient(h http.Header, trust *TrustList) (client, scheme string) {
	var hops []string
	var protos []string
	for _, v := range h.Values("Forwarded") {
		for _, elem := range strings.Split(v, ",") {
			for _, pair := range strings.Split(elem, ";") {
				k, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if !ok {
					continue
				}
				val = strings.Trim(val, `"`)
				switch strings.ToLower(k) {
				case "for":
					hops = append(hops, val)
				case "proto":
					protos = append(protos, strings.ToLower(val))
				}
			}
		}
	}
	if len(hops) == 0 {
		for _, v := range h.Values("X-Forwarded-For") {
			for _, hop := range strings.Split(v, ",") {
				hops = append(hops, strings.TrimSpace(hop))
			}
		}
	}
	if len(protos) == 0 {
		if p := h.Get("X-Forwarded-Proto"); p != "" {
			protos = append(protos, strings.ToLower(strings.TrimSpace(strings.Split(p, ",")[0])))
		}
	}
	for i := len(hops) - 1; i >= 0; i-- {
		host, _ := splitHostPort(hops[i])
		addr, err := netip.ParseAddr(host)
		if err != nil {
			break // "unknown", an obfuscated name: nothing further left can be believed
		}
		client = addr.Unmap().String()
		if !trust.Trusts(addr) {
			break
		}
	}
	if len(protos) > 0 && (protos[len(protos)-1] == "https" || protos[len(protos)-1] == "http") {
		scheme = protos[len(protos)-1]
	}
	return client, scheme
}
