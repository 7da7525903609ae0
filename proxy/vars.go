package proxy

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/herd-server/herd/protocol"
)

// ConnInfo is what the listener knows about a client connection beyond the request itself.
type ConnInfo struct {
	RemoteAddr string // "ip:port" of the client socket
	LocalAddr  string // "ip:port" the client connected to
	HTTPS      bool
	// Trusted lists the peers whose forwarding headers are believed; nil believes none.
	Trusted *TrustList
}

// remoteAddrVar is REMOTE_ADDR's index in what RequestVars appends to an empty dst
// (TestRemoteAddrVarIndex).
const remoteAddrVar = 9

// RequestVars translates an HTTP request into the uwsgi vars a WSGI worker turns into its
// environ. It does no I/O. bodyLength is the number of body bytes that will follow the
// packet (the master has read the body already, so it is always known), or 0.
//
// Choices, as uWSGI and gunicorn make them unless noted:
//   - PATH_INFO is the percent-decoded path; its bytes reach the app as latin-1 (PEP 3333).
//     The raw form stays in REQUEST_URI (and gunicorn's RAW_URI), so %2F remains
//     distinguishable from /. net/http refuses a path with a bad escape such as %zz (400),
//     where uWSGI would decode it into a NUL byte.
//   - A header whose name contains "_" is dropped: otherwise X_Forwarded_For would pose as
//     X-Forwarded-For, since both become HTTP_X_FORWARDED_FOR.
//   - Repeated headers are joined with ", ", Cookie with "; " (RFC 9110, RFC 6265).
//   - Content-Type and Content-Length become CONTENT_TYPE and CONTENT_LENGTH only; a chunked
//     body has been de-chunked, so no Transfer-Encoding reaches the app.
func RequestVars(dst []protocol.Var, r *http.Request, info ConnInfo, bodyLength int64) []protocol.Var {
	remoteHost, remotePort := splitHostPort(info.RemoteAddr)
	serverName, serverPort := splitHostPort(info.LocalAddr)
	if host := r.Host; host != "" {
		// SERVER_NAME follows the Host header as gunicorn and uWSGI do; the port of the
		// socket stays SERVER_PORT unless the Host names one.
		h, p := splitHostPort(host)
		serverName = h
		if p != "" {
			serverPort = p
		}
	}
	scheme := "http"
	if info.HTTPS {
		scheme = "https"
	}
	peer, _ := netip.ParseAddr(remoteHost)
	if !peer.IsValid() && isUnixSocket(info.LocalAddr) {
		// A peer on a Unix socket is a process of this host (the socket's mode chose
		// which): it is trusted as the local host is, nginx's proxy_pass to unix:PATH
		// included. gunicorn trusts such peers whatever its list says.
		peer = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		// Such a peer has no address (Go shows "@"): REMOTE_ADDR is empty, as gunicorn
		// and uWSGI give it, unless a proxy forwarded the client's below.
		remoteHost, remotePort = "", ""
	}
	trusted := info.Trusted.Trusts(peer)
	if trusted {
		client, fwdScheme := forwardedClient(r.Header, info.Trusted)
		if client != "" && client != remoteHost {
			remoteHost, remotePort = client, ""
		}
		if fwdScheme != "" {
			scheme = fwdScheme
		}
	}
	https := scheme == "https"
	dst = append(dst,
		protocol.Var{Key: "REQUEST_METHOD", Value: r.Method},
		protocol.Var{Key: "REQUEST_URI", Value: r.RequestURI},
		protocol.Var{Key: "RAW_URI", Value: r.RequestURI}, // gunicorn's name for the same
		protocol.Var{Key: "PATH_INFO", Value: r.URL.Path},
		protocol.Var{Key: "QUERY_STRING", Value: r.URL.RawQuery},
		protocol.Var{Key: "SCRIPT_NAME", Value: ""},
		protocol.Var{Key: "SERVER_PROTOCOL", Value: r.Proto},
		protocol.Var{Key: "SERVER_NAME", Value: serverName},
		protocol.Var{Key: "SERVER_PORT", Value: serverPort},
		protocol.Var{Key: "REMOTE_ADDR", Value: remoteHost},
		protocol.Var{Key: "REMOTE_PORT", Value: remotePort},
		protocol.Var{Key: "UWSGI_SCHEME", Value: scheme},
	)
	if https {
		dst = append(dst, protocol.Var{Key: "HTTPS", Value: "on"})
	}
	if r.Host != "" {
		dst = append(dst, protocol.Var{Key: "HTTP_HOST", Value: r.Host})
	}
	if ct := r.Header["Content-Type"]; len(ct) > 0 {
		dst = append(dst, protocol.Var{Key: "CONTENT_TYPE", Value: ct[0]})
	}
	if bodyLength > 0 || r.Header.Get("Content-Length") != "" {
		dst = append(dst, protocol.Var{Key: "CONTENT_LENGTH", Value: strconv.FormatInt(bodyLength, 10)})
	}
	for name, values := range r.Header {
		key, ok := cgiHeaderKey(name)
		if !ok || !trusted && isForwardingHeader(name) {
			continue
		}
		sep := ", "
		if key == "HTTP_COOKIE" {
			sep = "; "
		}
		value := values[0]
		if len(values) > 1 {
			value = strings.Join(values, sep)
		}
		dst = append(dst, protocol.Var{Key: key, Value: value})
	}
	return dst
}

// cgiHeaderKey maps a header name to its CGI variable, or says it must not be passed.
func cgiHeaderKey(name string) (string, bool) {
	switch name {
	case "Content-Type", "Content-Length", "Host", "Transfer-Encoding":
		// Passed as their own variables above, or (Transfer-Encoding) no longer true: the
		// master has read the whole body and frames it by length.
		return "", false
	}
	if key, ok := commonHeaderKeys[name]; ok {
		return key, true
	}
	if strings.IndexByte(name, '_') >= 0 {
		return "", false
	}
	return makeCGIHeaderKey(name), true
}

// commonHeaderKeys holds the variables of the headers browsers and proxies send, made once:
// the rest are made per request.
var commonHeaderKeys = func() map[string]string {
	names := []string{
		"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Authorization",
		"Cache-Control", "Connection", "Cookie", "Dnt", "Forwarded", "If-Match",
		"If-Modified-Since", "If-None-Match", "If-Range", "If-Unmodified-Since", "Origin",
		"Pragma", "Priority", "Range", "Referer", "Sec-Ch-Ua", "Sec-Ch-Ua-Mobile",
		"Sec-Ch-Ua-Platform", "Sec-Fetch-Dest", "Sec-Fetch-Mode", "Sec-Fetch-Site",
		"Sec-Fetch-User", "Te", "Upgrade", "Upgrade-Insecure-Requests", "User-Agent", "Via",
		"X-Csrftoken", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Port",
		"X-Forwarded-Proto", "X-Real-Ip", "X-Request-Id", "X-Requested-With",
	}
	m := make(map[string]string, len(names))
	for _, n := range names {
		m[n] = makeCGIHeaderKey(n)
	}
	return m
}()

// makeCGIHeaderKey is HTTP_ and the name in upper case with - as _.
func makeCGIHeaderKey(name string) string {
	b := make([]byte, 0, len(name)+5)
	b = append(b, "HTTP_"...)
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '-':
			c = '_'
		case 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		}
		b = append(b, c)
	}
	return string(b)
}

// isUnixSocket says whether a listener's address is a Unix socket's (a path or an abstract
// name): a TCP listener's is always IP:PORT.
func isUnixSocket(local string) bool {
	if local == "" {
		return false // not known
	}
	host, _ := splitHostPort(local)
	_, err := netip.ParseAddr(host)
	return err != nil
}

func splitHostPort(addr string) (host, port string) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return strings.Trim(addr, "[]"), ""
	}
	return h, p
}
