package listener

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
)

func tcp(s string) *net.TCPAddr { return net.TCPAddrFromAddrPort(mustAddrPort(s)) }

func TestReadHeader(t *testing.T) {
	v2 := func(verCmd, famProto byte, body ...byte) string {
		b := append([]byte{}, sigV2...)
		b = append(b, verCmd, famProto, byte(len(body)>>8), byte(len(body)))
		return string(append(b, body...))
	}
	inet := []byte{192, 0, 2, 1, 198, 51, 100, 7, 0xdc, 0x04, 0x01, 0xbb}
	inet6 := append(append(append([]byte{}, net.ParseIP("2001:db8::1")...), net.ParseIP("2001:db8::2")...), 0x30, 0x39, 0x00, 0x50)
	tests := []struct {
		name    string
		in      string
		want    Header
		wantErr error
	}{
		{"v1 tcp4", "PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n", Header{1, tcp("192.0.2.1:56324"), tcp("198.51.100.7:443")}, nil},
		{"v1 tcp6", "PROXY TCP6 2001:db8::1 2001:db8::2 12345 80\r\n", Header{1, tcp("[2001:db8::1]:12345"), tcp("[2001:db8::2]:80")}, nil},
		{"v1 unknown", "PROXY UNKNOWN\r\n", Header{Version: 1}, nil},
		{"v1 unknown with junk", "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", Header{Version: 1}, nil},
		{"v1 longest", "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n", Header{1, tcp("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"), tcp("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")}, nil},
		{"v1 too long", "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535      \r\n", Header{}, ErrV1TooLong},
		{"v1 tcp4 with v6 address", "PROXY TCP4 2001:db8::1 192.0.2.2 1 2\r\n", Header{}, ErrV1Malformed},
		{"v1 tcp6 with v4 address", "PROXY TCP6 192.0.2.1 192.0.2.2 1 2\r\n", Header{}, ErrV1Malformed},
		{"v1 port too big", "PROXY TCP4 192.0.2.1 192.0.2.2 65536 2\r\n", Header{}, ErrV1Malformed},
		{"v1 port leading zero", "PROXY TCP4 192.0.2.1 192.0.2.2 080 2\r\n", Header{}, ErrV1Malformed},
		{"v1 missing field", "PROXY TCP4 192.0.2.1 192.0.2.2 80\r\n", Header{}, ErrV1Malformed},
		{"v1 double space", "PROXY TCP4  192.0.2.1 192.0.2.2 80 81\r\n", Header{}, ErrV1Malformed},
		{"v1 bare LF", "PROXY TCP4 192.0.2.1 192.0.2.2 80 81\n", Header{}, ErrV1Malformed},
		{"v1 unknown protocol", "PROXY UDP4 192.0.2.1 192.0.2.2 80 81\r\n", Header{}, ErrV1Malformed},
		{"v1 truncated", "PROXY TCP4 192.0.2.1", Header{}, ErrV1Malformed},
		{"v1 zone", "PROXY TCP6 fe80::1%eth0 fe80::2 1 2\r\n", Header{}, ErrV1Malformed},
		{"plain HTTP", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", Header{}, ErrNoProxyHeader},
		{"POST is no PROXY", "POST / HTTP/1.1\r\nHost: x\r\n\r\n", Header{}, ErrNoProxyHeader},
		{"empty", "", Header{}, ErrNoProxyHeader},
		{"v2 inet", v2(0x21, 0x11, inet...), Header{2, tcp("192.0.2.1:56324"), tcp("198.51.100.7:443")}, nil},
		{"v2 inet6", v2(0x21, 0x21, inet6...), Header{2, tcp("[2001:db8::1]:12345"), tcp("[2001:db8::2]:80")}, nil},
		{"v2 inet with TLVs", v2(0x21, 0x11, append(append([]byte{}, inet...), 0x04, 0x00, 0x01, 'x')...), Header{2, tcp("192.0.2.1:56324"), tcp("198.51.100.7:443")}, nil},
		{"v2 local", v2(0x20, 0x00), Header{Version: 2}, nil},
		{"v2 local ignores addresses", v2(0x20, 0x11, inet...), Header{Version: 2}, nil},
		{"v2 unspec", v2(0x21, 0x00), Header{Version: 2}, nil},
		{"v2 unix", v2(0x21, 0x31, make([]byte, 216)...), Header{Version: 2}, nil},
		{"v2 version 1", v2(0x11, 0x11, inet...), Header{}, ErrV2Version},
		{"v2 command 2", v2(0x22, 0x11, inet...), Header{}, ErrV2Command},
		{"v2 dgram", v2(0x21, 0x12, inet...), Header{}, ErrV2Family},
		{"v2 family 4", v2(0x21, 0x41, inet...), Header{}, ErrV2Family},
		{"v2 inet short", v2(0x21, 0x11, inet[:11]...), Header{}, ErrV2AddressTooShort},
		{"v2 inet6 short", v2(0x21, 0x21, inet...), Header{}, ErrV2AddressTooShort},
		{"v2 truncated body", v2(0x21, 0x11, inet...)[:14] + "\x00\xc8" + string(inet), Header{}, ErrV2AddressTooShort},
		{"v2 bad signature", "\r\n\r\n\x00\r\nQUIT!" + v2(0x21, 0x11, inet...)[12:], Header{}, ErrNoProxyHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const after = "GET / HTTP/1.1\r\n"
			r := bufio.NewReaderSize(strings.NewReader(tt.in+after), headerBufferSize)
			got, err := ReadHeader(r)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if !sameHeader(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if rest, _ := io.ReadAll(r); string(rest) != after {
				t.Errorf("read past the header: left %q", rest)
			}
		})
	}
}

func sameHeader(a, b Header) bool {
	eq := func(x, y *net.TCPAddr) bool {
		if x == nil || y == nil {
			return x == nil && y == nil
		}
		// An IPv4 address and its IPv4-mapped IPv6 form name the same client.
		return x.AddrPort().Addr().Unmap() == y.AddrPort().Addr().Unmap() && x.Port == y.Port
	}
	return a.Version == b.Version && eq(a.Source, b.Source) && eq(a.Dest, b.Dest)
}

func TestAppendRoundTrip(t *testing.T) {
	for _, h := range []Header{
		{Source: tcp("192.0.2.1:1"), Dest: tcp("192.0.2.2:65535")},
		{Source: tcp("[2001:db8::1]:443"), Dest: tcp("[::1]:0")},
		{},
	} {
		for _, enc := range []struct {
			version int
			append  func([]byte, Header) []byte
		}{{1, AppendV1}, {2, AppendV2}} {
			b := enc.append(nil, h)
			got, err := ReadHeader(bufio.NewReader(bytes.NewReader(b)))
			h.Version = enc.version
			if err != nil || !sameHeader(got, h) {
				t.Errorf("v%d %q: got %+v, %v; want %+v", enc.version, b, got, err, h)
			}
		}
	}
}

// FuzzReadHeader: no input panics, reads past its header, or parses into a header that does
// not encode back to itself.
func FuzzReadHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(AppendV2(nil, Header{Source: tcp("[2001:db8::1]:443"), Dest: tcp("[::1]:80")}))
	f.Add(AppendV2(nil, Header{}))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(in), headerBufferSize)
		h, err := ReadHeader(r)
		if err != nil {
			return
		}
		if r.Buffered() > len(in) {
			t.Fatal("impossible buffer")
		}
		if h.Source == nil {
			return
		}
		for _, enc := range []func([]byte, Header) []byte{AppendV1, AppendV2} {
			again, err := ReadHeader(bufio.NewReader(bytes.NewReader(enc(nil, h))))
			if err != nil {
				t.Fatalf("re-encoded %+v does not parse: %v", h, err)
			}
			again.Version = h.Version
			if !sameHeader(again, h) {
				t.Fatalf("round trip: %+v became %+v", h, again)
			}
		}
	})
}
