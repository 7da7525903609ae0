package listener

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"
)

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// serveOne accepts one connection through a ProxyListener and reports what it saw.
type seen struct {
	remote, local string
	data          string
	err           error
}

func serveOne(t *testing.T, send []byte) (seen, error) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := make(chan error, 1)
	ln := &ProxyListener{Listener: inner, HeaderTimeout: 5 * time.Second, OnError: func(_ net.Addr, err error) { refused <- err }}
	defer ln.Close()
	result := make(chan seen, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			result <- seen{err: err}
			return
		}
		defer c.Close()
		s := seen{remote: c.RemoteAddr().String(), local: c.LocalAddr().String()}
		line, err := bufio.NewReader(c).ReadString('\n')
		s.data, s.err = line, err
		result <- s
	}()
	client, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.Write(send); err != nil {
		t.Fatal(err)
	}
	s := <-result
	select {
	case err := <-refused:
		return s, err
	default:
		return s, nil
	}
}

func TestProxyListenerTakesAddressesFromHeader(t *testing.T) {
	h := Header{Source: tcp("203.0.113.9:4711"), Dest: tcp("198.51.100.1:443")}
	for _, hdr := range [][]byte{AppendV1(nil, h), AppendV2(nil, h)} {
		s, refusedErr := serveOne(t, append(hdr, "hello\n"...))
		if refusedErr != nil || s.err != nil {
			t.Fatalf("refused: %v, read: %v", refusedErr, s.err)
		}
		if s.remote != "203.0.113.9:4711" || s.local != "198.51.100.1:443" || s.data != "hello\n" {
			t.Errorf("saw %+v", s)
		}
	}
}

func TestProxyListenerLocalKeepsRealAddress(t *testing.T) {
	s, refusedErr := serveOne(t, append(AppendV2(nil, Header{}), "hc\n"...))
	if refusedErr != nil || s.data != "hc\n" {
		t.Fatalf("refused %v, saw %+v", refusedErr, s)
	}
	if ap, err := netip.ParseAddrPort(s.remote); err != nil || !ap.Addr().IsLoopback() {
		t.Errorf("LOCAL header: remote %q, want the real loopback peer", s.remote)
	}
}

func TestProxyListenerRefusesWithoutHeader(t *testing.T) {
	s, refusedErr := serveOne(t, []byte("GET / HTTP/1.1\r\n\r\n"))
	if !errors.Is(refusedErr, ErrNoProxyHeader) || !errors.Is(s.err, ErrNoProxyHeader) {
		t.Fatalf("refused %v, read error %v", refusedErr, s.err)
	}
}

func TestProxyListenerHeaderTimeout(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &ProxyListener{Listener: inner, HeaderTimeout: 100 * time.Millisecond}
	defer ln.Close()
	client, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("silent client: read error %v, want a deadline", err)
	}
	// The server closed it: the client sees the end.
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("client read %v, want EOF", err)
	}
}

func TestNamesFor(t *testing.T) {
	got := namesFor("http:uwsgi", 3)
	if len(got) != 3 || got[0] != "http" || got[1] != "uwsgi" || got[2] != "unknown" {
		t.Errorf("namesFor = %q", got)
	}
	if got := namesFor("", 1); got[0] != "unknown" {
		t.Errorf("namesFor empty = %q", got)
	}
}

func TestFileListenerRefusesNonListening(t *testing.T) {
	fds, err := syscallSocketpair()
	if err != nil {
		t.Fatal(err)
	}
	defer fds[0].Close()
	defer fds[1].Close()
	if _, err := fileListener(int(fds[0].Fd()), "x"); !errors.Is(err, ErrActivation) {
		t.Errorf("connected socket accepted as a listener: %v", err)
	}
}

func syscallSocketpair() ([2]*os.File, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		return [2]*os.File{}, err
	}
	return [2]*os.File{os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")}, nil
}
