package listener

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2) puts the client's real
// addresses in front of a connection a balancer relays. A listener that asks for it takes
// REMOTE_ADDR from that header, and refuses connections that do not start with a valid one:
// accepting both would let any client that reaches the port directly forge its address.

// Errors of ReadHeader, one per malformed case.
var (
	ErrNoProxyHeader     = errors.New("proxy protocol: connection does not start with a PROXY header")
	ErrV1TooLong         = errors.New("proxy protocol: v1 header longer than 107 bytes")
	ErrV1Malformed       = errors.New("proxy protocol: malformed v1 header")
	ErrV2Version         = errors.New("proxy protocol: v2 header with an unknown version")
	ErrV2Command         = errors.New("proxy protocol: v2 header with an unknown command")
	ErrV2Family          = errors.New("proxy protocol: v2 header with an unknown address family or transport")
	ErrV2AddressTooShort = errors.New("proxy protocol: v2 header shorter than its addresses")
)

// Signatures the two versions start with.
var (
	sigV1 = []byte("PROXY ")
	sigV2 = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// v1MaxLen is the longest v1 line the specification allows, CRLF included.
const v1MaxLen = 107

// Header is what a PROXY header says. Source and Dest are nil when the balancer sent no
// addresses (v1 UNKNOWN, v2 LOCAL such as its health checks, or an unspecified family):
// then the connection's own addresses stand.
type Header struct {
	Version int
	Source  *net.TCPAddr
	Dest    *net.TCPAddr
}

// ReadHeader reads one PROXY header, v1 or v2, from r and nothing after it.
func ReadHeader(r *bufio.Reader) (Header, error) {
	first, err := r.Peek(1)
	if err != nil {
		return Header{}, fmt.Errorf("%w: %w", ErrNoProxyHeader, err)
	}
	switch first[0] {
	case sigV1[0]:
		return readV1(r)
	case sigV2[0]:
		return readV2(r)
	}
	return Header{}, ErrNoProxyHeader
}

func readV1(r *bufio.Reader) (Header, error) {
	line, err := readLine(r, v1MaxLen)
	if err != nil {
		return Header{}, err
	}
	return parseV1(line)
}

// readLine reads up to and including "\r\n", at most max bytes, without reading past it.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	for n := 1; ; n++ {
		if n > max {
			return nil, ErrV1TooLong
		}
		b, err := r.Peek(n)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrV1Malformed, err)
		}
		if b[n-1] == '\n' {
			line := make([]byte, n)
			_, _ = io.ReadFull(r, line)
			return line, nil
		}
	}
}

// parseV1 parses "PROXY TCP4 192.0.2.1 192.0.2.2 56324 443\r\n".
func parseV1(line []byte) (Header, error) {
	if !bytes.HasPrefix(line, sigV1) {
		return Header{}, ErrNoProxyHeader
	}
	body, ok := bytes.CutSuffix(line[len(sigV1):], []byte("\r\n"))
	if !ok {
		return Header{}, fmt.Errorf("%w: no CRLF at the end", ErrV1Malformed)
	}
	fields := strings.Split(string(body), " ")
	switch fields[0] {
	case "UNKNOWN":
		// The balancer cannot tell (another transport): whatever follows is to be ignored.
		return Header{Version: 1}, nil
	case "TCP4", "TCP6":
	default:
		return Header{}, fmt.Errorf("%w: protocol %q", ErrV1Malformed, fields[0])
	}
	if len(fields) != 5 {
		return Header{}, fmt.Errorf("%w: %d fields, want 5", ErrV1Malformed, len(fields))
	}
	want4 := fields[0] == "TCP4"
	src, err := v1Addr(fields[1], fields[3], want4)
	if err != nil {
		return Header{}, err
	}
	dst, err := v1Addr(fields[2], fields[4], want4)
	if err != nil {
		return Header{}, err
	}
	return Header{Version: 1, Source: src, Dest: dst}, nil
}

func v1Addr(ip, port string, want4 bool) (*net.TCPAddr, error) {
	addr, err := netip.ParseAddr(ip)
	if err != nil || addr.Zone() != "" || addr.Is4() != want4 {
		return nil, fmt.Errorf("%w: address %q", ErrV1Malformed, ip)
	}
	// Decimal without leading zeros, 0..65535, as the specification spells ports.
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || port != strconv.FormatUint(p, 10) {
		return nil, fmt.Errorf("%w: port %q", ErrV1Malformed, port)
	}
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(addr, uint16(p))), nil
}

// v2 header layout: 12-byte signature, version<<4|command, family<<4|transport, 16-bit
// big-endian length of what follows (addresses, then TLVs this listener ignores).
const (
	v2FixedLen   = 16
	v2Version    = 0x2
	cmdLocal     = 0x0
	cmdProxy     = 0x1
	famUnspec    = 0x0
	famInet      = 0x1
	famInet6     = 0x2
	famUnix      = 0x3
	protoUnspec  = 0x0
	protoStream  = 0x1
	inetAddrLen  = 4 + 4 + 2 + 2
	inet6AddrLen = 16 + 16 + 2 + 2
)

func readV2(r *bufio.Reader) (Header, error) {
	fixed := make([]byte, v2FixedLen)
	if _, err := io.ReadFull(r, fixed[:len(sigV2)]); err != nil || !bytes.Equal(fixed[:len(sigV2)], sigV2) {
		return Header{}, ErrNoProxyHeader
	}
	if _, err := io.ReadFull(r, fixed[len(sigV2):]); err != nil {
		return Header{}, fmt.Errorf("%w: %w", ErrV2AddressTooShort, err)
	}
	rest := make([]byte, binary.BigEndian.Uint16(fixed[14:16]))
	if _, err := io.ReadFull(r, rest); err != nil {
		return Header{}, fmt.Errorf("%w: %w", ErrV2AddressTooShort, err)
	}
	return parseV2(fixed[12], fixed[13], rest)
}

func parseV2(verCmd, famProto byte, rest []byte) (Header, error) {
	if verCmd>>4 != v2Version {
		return Header{}, ErrV2Version
	}
	h := Header{Version: 2}
	switch verCmd & 0xf {
	case cmdLocal:
		return h, nil // the balancer's own connection (health check): real addresses stand
	case cmdProxy:
	default:
		return Header{}, ErrV2Command
	}
	fam, proto := famProto>>4, famProto&0xf
	if proto != protoUnspec && proto != protoStream || fam > famUnix {
		return Header{}, ErrV2Family
	}
	switch {
	case fam == famInet && proto == protoStream:
		if len(rest) < inetAddrLen {
			return Header{}, ErrV2AddressTooShort
		}
		h.Source = v2Addr(rest[0:4], rest[8:10])
		h.Dest = v2Addr(rest[4:8], rest[10:12])
	case fam == famInet6 && proto == protoStream:
		if len(rest) < inet6AddrLen {
			return Header{}, ErrV2AddressTooShort
		}
		h.Source = v2Addr(rest[0:16], rest[32:34])
		h.Dest = v2Addr(rest[16:32], rest[34:36])
	}
	// UNSPEC and AF_UNIX sources have no IP to give: the connection's addresses stand.
	return h, nil
}

func v2Addr(ip, port []byte) *net.TCPAddr {
	addr, _ := netip.AddrFromSlice(ip)
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(addr, binary.BigEndian.Uint16(port)))
}

// AppendV1 appends h as a v1 header (UNKNOWN without addresses), as balancers write it.
func AppendV1(dst []byte, h Header) []byte {
	if h.Source == nil || h.Dest == nil {
		return append(dst, "PROXY UNKNOWN\r\n"...)
	}
	src, dstAddr, is4 := headerAddrs(h)
	proto := "TCP6"
	if is4 {
		proto = "TCP4"
	}
	return fmt.Appendf(dst, "PROXY %s %s %s %d %d\r\n", proto, src.Addr(), dstAddr.Addr(), src.Port(), dstAddr.Port())
}

// headerAddrs gives both addresses in one family: IPv4 when both are, else IPv6 (an IPv4
// address then appears IPv4-mapped), since a header names one family for both.
func headerAddrs(h Header) (src, dst netip.AddrPort, is4 bool) {
	src, dst = h.Source.AddrPort(), h.Dest.AddrPort()
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	if s.Is4() && d.Is4() {
		return netip.AddrPortFrom(s, src.Port()), netip.AddrPortFrom(d, dst.Port()), true
	}
	s, d = netip.AddrFrom16(s.As16()), netip.AddrFrom16(d.As16())
	return netip.AddrPortFrom(s, src.Port()), netip.AddrPortFrom(d, dst.Port()), false
}

// AppendV2 appends h as a v2 header (LOCAL without addresses), as balancers write it.
func AppendV2(dst []byte, h Header) []byte {
	dst = append(dst, sigV2...)
	if h.Source == nil || h.Dest == nil {
		return append(dst, v2Version<<4|cmdLocal, famUnspec<<4|protoUnspec, 0, 0)
	}
	src, dstAddr, is4 := headerAddrs(h)
	fam, n := byte(famInet6), inet6AddrLen
	if is4 {
		fam, n = famInet, inetAddrLen
	}
	dst = append(dst, v2Version<<4|cmdProxy, fam<<4|protoStream)
	dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	dst = append(dst, src.Addr().AsSlice()...)
	dst = append(dst, dstAddr.Addr().AsSlice()...)
	dst = binary.BigEndian.AppendUint16(dst, src.Port())
	return binary.BigEndian.AppendUint16(dst, dstAddr.Port())
}
