package proxy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// The worker side of these tests is a real Unix socket pair whose far end writes whatever
// bytes the test gives it: a Python worker cannot be made to write a malformed response
// (worker.py validates what the app passes), and these tests are about what the master does
// when one arrives anyway. cmd/herd's TestMalformedWorkerResponses does the same through a
// real herd and a real worker.

// rawWorker is a Backend whose every connection answers the request with answer and then
// closes its side; released receives what the handler said about reuse.
type rawWorker struct {
	answer   []byte
	released chan bool
}

func (b *rawWorker) Acquire(context.Context) (Lease, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	master, err := fileConn(fds[0])
	if err != nil {
		syscall.Close(fds[1])
		return nil, err
	}
	worker, err := fileConn(fds[1])
	if err != nil {
		master.Close()
		return nil, err
	}
	go func() {
		defer worker.Close()
		_, _ = worker.Write(b.answer)
		_ = worker.(*net.UnixConn).CloseWrite()
		_, _ = io.Copy(io.Discard, worker) // until the master closes its end
	}()
	return &rawLease{conn: master, br: bufio.NewReaderSize(master, 16<<10), released: b.released}, nil
}

func fileConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "socketpair")
	defer f.Close()
	return net.FileConn(f)
}

type rawLease struct {
	conn     net.Conn
	br       *bufio.Reader
	released chan bool
}

func (l *rawLease) Reader() *bufio.Reader              { return l.br }
func (l *rawLease) WorkerID() int                      { return 0 }
func (l *rawLease) Stream() Stream                     { return nil }
func (l *rawLease) Describe(string, string, time.Time) {}
func (l *rawLease) Followed() bool                     { return false }
func (l *rawLease) ConnBroke()                         {}
func (l *rawLease) Send(packet, mem []byte, file io.Reader) error {
	if _, err := l.conn.Write(append(append([]byte{}, packet...), mem...)); err != nil {
		return err
	}
	if file != nil {
		_, err := io.Copy(l.conn, file)
		return err
	}
	return nil
}
func (l *rawLease) Release(reusable bool) {
	l.conn.Close()
	select {
	case l.released <- reusable:
	default:
	}
}

// rawFront is a real HTTP server in front of a rawWorker.
type rawFront struct {
	worker *rawWorker
	srv    *httptest.Server
}

func startRawFront(t testing.TB) *rawFront {
	t.Helper()
	w := &rawWorker{released: make(chan bool, 1)}
	h := &Handler{Backend: w, Log: zerolog.Nop(), BodyBuffer: 4096, ResponseBuffer: 64 << 10, TempDir: t.TempDir()}
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the aborted responses are expected
	srv.Start()
	t.Cleanup(srv.Close)
	return &rawFront{worker: w, srv: srv}
}

// exchange has the worker answer with answer and returns the raw bytes the client got for
// one GET, and whether the handler let the worker connection be reused.
func (f *rawFront) exchange(t testing.TB, answer []byte) (got []byte, reusable bool) {
	t.Helper()
	f.worker.answer = answer
	select { // a previous exchange's report, if any, is stale
	case <-f.worker.released:
	default:
	}
	c, err := net.Dial("tcp", f.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(c)
	if err != nil && !isReset(err) {
		t.Fatalf("the server did not finish the answer to %q: %v", clip(answer), err)
	}
	select {
	case reusable = <-f.worker.released:
	case <-time.After(10 * time.Second):
		t.Fatalf("the handler never released the worker after %q", clip(answer))
	}
	return got, reusable
}

// clientStatus is the status code the client read, 0 when no complete head arrived (the
// connection was cut).
func clientStatus(got []byte) int {
	if !bytes.Contains(got, []byte("\r\n\r\n")) || len(got) < 12 {
		return 0
	}
	code, _ := strconv.Atoi(string(got[9:12]))
	return code
}

// TestMalformedWorkerResponses: every malformed head becomes a 502 and nothing of it reaches
// the client; well-formed answers pass; a worker that wrote past its framing is not reused.
func TestMalformedWorkerResponses(t *testing.T) {
	f := startRawFront(t)
	const injected = "Injected"
	ok := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-App: yes\r\n\r\nhi"
	for _, tc := range []struct {
		name, answer string
		status       int
		cut          bool // the head went out, then the connection was cut mid-body
		reusable     bool
	}{
		{"well-formed", ok, 200, false, true},
		{"chunked", "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", 201, false, true},
		{"no reason phrase", "HTTP/1.1 204\r\n\r\n", 204, false, true},
		{"HTTP/1.0, close-delimited", "HTTP/1.0 200 OK\r\n\r\nhi", 200, false, false},
		{"no status code", "HTTP/1.1 \r\nContent-Length: 0\r\n\r\n", 502, false, false},
		{"status 99", "HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n", 502, false, false},
		{"status 1000", "HTTP/1.1 1000 High\r\nContent-Length: 0\r\n\r\n", 502, false, false},
		{"status 999", "HTTP/1.1 999 High\r\nContent-Length: 0\r\n\r\n", 502, false, false},
		{"interim 100", "HTTP/1.1 100 Continue\r\n\r\n" + ok, 502, false, false},
		{"upgrade 101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", 502, false, false},
		{"no version", "200 OK\r\nContent-Length: 0\r\n\r\n", 502, false, false},
		{"HTTP/2 version", "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", 502, false, false},
		{"garbage before the status", "garbage\r\n" + ok, 502, false, false},
		{"blank line before the status", "\r\n" + ok, 502, false, false},
		{"CR injection", "HTTP/1.1 200 OK\r\nX-A: a\r" + injected + ": yes\r\nContent-Length: 0\r\n\r\n", 502, false, false},
		{"LF injection", "HTTP/1.1 200 OK\r\nX-A: a\n" + injected + ": yes\r\nContent-Length: 0\r\n\r\n", 502, false, false},
		{"bare LF head", "HTTP/1.1 200 OK\n" + injected + ": yes\n\n", 502, false, false},
		{"CRLF in the reason", "HTTP/1.1 200 OK\r" + injected + ": yes\r\n\r\n", 502, false, false},
		{"NUL in a value", "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n", 502, false, false},
		{"space in a name", "HTTP/1.1 200 OK\r\nX A: b\r\nContent-Length: 0\r\n\r\n", 502, false, false},
		{"space before the colon", "HTTP/1.1 200 OK\r\n" + injected + " : b\r\nContent-Length: 0\r\n\r\n", 502, false, false},
		{"empty name", "HTTP/1.1 200 OK\r\n: b\r\nContent-Length: 0\r\n\r\n", 502, false, false},
		{"NUL in a name", "HTTP/1.1 200 OK\r\nX\x00A: b\r\nContent-Length: 0\r\n\r\n", 502, false, false},
		{"no colon", "HTTP/1.1 200 OK\r\n" + injected + "\r\nContent-Length: 0\r\n\r\n", 502, false, false},
		{"obs-fold", "HTTP/1.1 200 OK\r\nX-A: a\r\n " + injected + ": yes\r\nContent-Length: 0\r\n\r\n", 502, false, false},
		{"obs-fold with a tab", "HTTP/1.1 200 OK\r\nX-A: a\r\n\t" + injected + ": yes\r\nContent-Length: 0\r\n\r\n", 502, false, false},
		{"differing Content-Lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi!", 502, false, false},
		{"Content-Length and chunked", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", 502, false, false},
		{"bad Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nhi", 502, false, false},
		{"negative Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nhi", 502, false, false},
		{"body shorter than Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhi", 502, false, false},
		{"unknown transfer coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhi", 502, false, false},
		{"head cut", "HTTP/1.1 200 OK\r\nX-A: a", 502, false, false},
		{"status line cut", "HTTP/1.1 20", 502, false, false},
		{"nothing", "", 502, false, false},
		{"head too large", "HTTP/1.1 200 OK\r\nX-A: " + strings.Repeat("a", 2<<20) + "\r\n\r\n", 502, false, false},
		{"body longer than Content-Length", ok + "HTTP/1.1 200 OK\r\n" + injected + ": yes\r\nContent-Length: 0\r\n\r\n", 200, false, false},
		{"broken chunk after the head", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\nzz\r\n", 200, true, false},
		{"chunked cut", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n", 200, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, reusable := f.exchange(t, []byte(tc.answer))
			if status := clientStatus(got); status != tc.status {
				t.Errorf("client got status %d, want %d:\n%q", status, tc.status, clip(got))
			}
			if complete := bytes.HasSuffix(got, []byte("0\r\n\r\n")); tc.cut && complete {
				t.Errorf("a broken body reached the client as a complete one:\n%q", got)
			}
			if bytes.Contains(bytes.ToLower(got), []byte(strings.ToLower(injected))) {
				t.Errorf("the injected header reached the client:\n%q", got)
			}
			if reusable != tc.reusable {
				t.Errorf("worker connection reusable=%v, want %v", reusable, tc.reusable)
			}
		})
	}
}

// FuzzWorkerResponse: whatever a worker sends, the handler answers within bounds, and a
// client sees a status other than 502 only for a head that is well-formed by the simple
// reading of RFC 9112 below (written apart from h1's parser, proxy/h1/answer.go), and no
// header the worker did not send in a well-formed line. Seeds: testdata/fuzz/FuzzWorkerResponse.
func FuzzWorkerResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nhi",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	front := startRawFront(f)
	f.Fuzz(func(t *testing.T, answer []byte) {
		got, _ := front.exchange(t, answer)
		status := clientStatus(got)
		if status == 502 || status == 0 && len(got) == 0 {
			return
		}
		head, ok := wellFormedHead(answer)
		if !ok {
			t.Fatalf("malformed head passed with status %d:\nworker %q\nclient %q", status, clip(answer), clip(got))
		}
		if want, _ := strconv.Atoi(string(head[9:12])); status != 0 && status != want {
			t.Fatalf("client got %d, worker said %d", status, want)
		}
		sent := map[string]bool{"date": true, "content-length": true, "content-type": true, "connection": true, "transfer-encoding": true}
		for _, line := range strings.Split(string(head), "\r\n")[1:] {
			name, _, _ := strings.Cut(line, ":")
			sent[strings.ToLower(name)] = true
		}
		clientHead, _, _ := bytes.Cut(got, []byte("\r\n\r\n"))
		for _, line := range strings.Split(string(clientHead), "\r\n")[1:] {
			name, _, _ := strings.Cut(line, ":")
			if !sent[strings.ToLower(name)] {
				t.Fatalf("client got header %q the worker did not send:\nworker %q\nclient %q", name, clip(answer), clip(got))
			}
		}
	})
}

// wellFormedHead returns the head of b (without the blank line) when its status line and
// header lines are strictly well-formed.
func wellFormedHead(b []byte) ([]byte, bool) {
	head, _, found := bytes.Cut(b, []byte("\r\n\r\n"))
	if !found {
		return nil, false
	}
	lines := strings.Split(string(head), "\r\n")
	st := lines[0]
	if len(st) < 12 || (st[:9] != "HTTP/1.1 " && st[:9] != "HTTP/1.0 ") ||
		!strings.ContainsRune("2345", rune(st[9])) || !isDigit(st[10]) || !isDigit(st[11]) ||
		len(st) > 12 && st[12] != ' ' || strings.ContainsFunc(st, isCtl) {
		return nil, false
	}
	for _, line := range lines[1:] {
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || strings.ContainsFunc(value, isCtl) ||
			strings.IndexFunc(name, func(r rune) bool { return r > 0x7e || !strings.ContainsRune(tcharSet, r) }) >= 0 {
			return nil, false
		}
	}
	return head, true
}

const tcharSet = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

func isCtl(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// clip keeps failure messages short whatever the worker sent.
func clip(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}
