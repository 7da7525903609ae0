package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/herd-server/herd/internal/herdtest"
	"github.com/herd-server/herd/protocol"
	"github.com/herd-server/herd/supervisor"
	"github.com/herd-server/herd/supervisor/spawn"
)

// frontEnd is a real UwsgiServer on a Unix socket, dispatching to a real pool of one
// Python worker that serves testdata/frontapp.py.
type frontEnd struct {
	path string
	srv  *UwsgiServer
}

// poolBackend adapts the supervisor's pool to the Backend interface, as cmd/herd does.
type poolBackend struct{ pool *supervisor.Pool }

func (b poolBackend) Acquire(ctx context.Context) (Lease, error) {
	l, err := b.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	return testLease{l}, nil
}

// testLease is the pool's lease with its stream as the proxy's Stream, as the master's.
type testLease struct{ *supervisor.Lease }

func (l testLease) Stream() Stream {
	if s := l.Lease.Stream(); s != nil {
		return s
	}
	return nil
}

const testHeadTimeout = 300 * time.Millisecond

func startFrontEnd(t testing.TB) *frontEnd {
	t.Helper()
	herdtest.RequireTool(t, "python3", "python3")
	dir := t.TempDir()
	runDir := filepath.Join(dir, "run")
	if err := os.Mkdir(runDir, 0o700); err != nil {
		t.Fatal(err)
	}
	testdata, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	pool := supervisor.NewPool(64, 10*time.Second)
	sup := supervisor.New(supervisor.Options{
		Workers: 1, Threads: 1, BootTimeout: 30 * time.Second, GracefulTimeout: 5 * time.Second,
		RunDir: runDir, Log: zerolog.Nop(),
		Spawner: &spawn.Exec{
			Python:       "python3",
			WorkerScript: filepath.Join(herdtest.RepoRoot(t), "scripts", "herd_worker"),
			Args:         []string{"--app", "frontapp:app", "--threads", "1", "--chdir", testdata},
			Dir:          testdata,
		},
	}, pool)
	supDone := make(chan error, 1)
	go func() { supDone <- sup.Run(context.Background()) }()
	select {
	case <-sup.Ready():
	case err := <-supDone:
		t.Fatalf("worker did not boot: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("worker not ready within 30s")
	}
	fe := &frontEnd{path: filepath.Join(dir, "u.sock")}
	fe.srv = &UwsgiServer{
		Handler:         &Handler{Backend: poolBackend{pool}, Log: zerolog.Nop(), BodyBuffer: 4096, MaxBodySize: 1 << 20, TempDir: dir},
		HeadTimeout:     testHeadTimeout,
		BodyIdleTimeout: testHeadTimeout,
	}
	ln, err := net.Listen("unix", fe.path)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- fe.srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = fe.srv.Close()
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
		sup.Stop(false)
		<-supDone
	})
	return fe
}

// send writes data as one client, half-closes, and returns everything the server answered
// before it closed the connection. The server must close it within a few seconds, whatever
// data holds.
func (fe *frontEnd) send(t testing.TB, data []byte) []byte {
	t.Helper()
	c, err := net.Dial("unix", fe.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = c.Write(data) // the server may close before reading it all
	_ = c.(*net.UnixConn).CloseWrite()
	out, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !isReset(err) {
		t.Fatalf("the server did not close the connection: %v (sent %q)", err, truncate(data))
	}
	return out
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && strings.Contains(ne.Err.Error(), "reset")
}

func truncate(b []byte) []byte {
	if len(b) > 200 {
		return b[:200]
	}
	return b
}

func packet(t testing.TB, modifier1 uint8, vars []protocol.Var, body string) []byte {
	t.Helper()
	p, err := protocol.AppendPacket(nil, 0, vars)
	if err != nil {
		t.Fatal(err)
	}
	p[0] = modifier1
	return append(p, body...)
}

// resources counts what a leak would raise: goroutines and open fds of this process.
func resources() (goroutines, fds int) {
	entries, _ := os.ReadDir("/proc/self/fd")
	return runtime.NumGoroutine(), len(entries)
}

// waitSettled waits until goroutines and fds are back to (at most) the baseline: a
// connection's goroutine ends a moment after the client saw the close.
func waitSettled(t testing.TB, baseG, baseFD int, after []byte) {
	t.Helper()
	var g, fd int
	if !herdtest.Poll(3*time.Second, func() bool {
		g, fd = resources()
		return g <= baseG && fd <= baseFD
	}) {
		t.Fatalf("leak after %q: %d goroutines (baseline %d), %d fds (baseline %d)", truncate(after), g, baseG, fd, baseFD)
	}
}

func seedPackets(t testing.TB) [][]byte {
	get := []protocol.Var{{Key: "REQUEST_METHOD", Value: "GET"}, {Key: "PATH_INFO", Value: "/x"}, {Key: "CONTENT_LENGTH", Value: ""}}
	post := []protocol.Var{{Key: "REQUEST_METHOD", Value: "POST"}, {Key: "PATH_INFO", Value: "/y"}, {Key: "CONTENT_LENGTH", Value: "5"}}
	stream := []protocol.Var{{Key: "PATH_INFO", Value: "/stream"}}
	full := packet(t, 0, post, "hello")
	return [][]byte{
		packet(t, 0, get, ""),
		full,
		packet(t, 0, stream, ""),
		packet(t, modifierManagePathInfo, []protocol.Var{{Key: "SCRIPT_NAME", Value: "/a"}, {Key: "PATH_INFO", Value: "/a/env"}}, ""),
		packet(t, 0, append(post[:2:2], protocol.Var{Key: "CONTENT_LENGTH", Value: "99"}), "short"),
		packet(t, 0, []protocol.Var{{Key: "CONTENT_LENGTH", Value: "x"}}, ""),
		packet(t, 0, []protocol.Var{{Key: "UWSGI_FILE", Value: "/tmp/evil.py"}, {Key: "PATH_INFO", Value: "/env"}}, ""),
		full[:2],
		full[:10],
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		{0, 0xff, 0xff, 0},
		{},
	}
}

// FuzzUwsgiFrontEnd sends arbitrary bytes to a real uwsgi front end backed by a real worker:
// the server never panics, always closes the connection, and leaks no goroutine and no fd.
// The seeds are in seedPackets and testdata/fuzz/FuzzUwsgiFrontEnd.
func FuzzUwsgiFrontEnd(f *testing.F) {
	for _, p := range seedPackets(f) {
		f.Add(p)
	}
	fe := startFrontEnd(f)
	warmUp := seedPackets(f)[0]
	var once sync.Once
	var baseG, baseFD int
	f.Fuzz(func(t *testing.T, data []byte) {
		// The baseline is taken in the goroutine that runs each input (go test runs every
		// seed in its own), after a request opened the pool's worker connection.
		once.Do(func() {
			fe.send(t, warmUp)
			baseG, baseFD = resources()
		})
		fe.send(t, data)
		waitSettled(t, baseG, baseFD, data)
	})
}

// TestUwsgiFrontEndAnswers: a plain uwsgi client gets a raw HTTP response, and then EOF.
func TestUwsgiFrontEndAnswers(t *testing.T) {
	fe := startFrontEnd(t)
	seeds := seedPackets(t)
	for _, tc := range []struct {
		name string
		req  []byte
		want []string // substrings of the answer, in order
	}{
		{"GET", seeds[0], []string{"HTTP/1.1 200 OK\r\n", "Content-Length: 8\r\n", "\r\n\r\nGET /x 0"}},
		{"POST", seeds[1], []string{"HTTP/1.1 200 OK\r\n", "\r\n\r\nPOST /y 5"}},
		{"streamed, de-chunked", seeds[2], []string{"HTTP/1.1 200 OK\r\n", "\r\n\r\npart 0\npart 1\npart 2\n"}},
		{"modifier1 30", seeds[3], []string{"200 OK", "PATH_INFO=/env\n", "SCRIPT_NAME=/a\n"}},
		{"short body", seeds[4], []string{"HTTP/1.1 400 Bad Request\r\n"}},
		{"bad CONTENT_LENGTH", seeds[5], []string{"HTTP/1.1 400 Bad Request\r\n"}},
		{"too large", packet(t, 0, []protocol.Var{{Key: "CONTENT_LENGTH", Value: "2000000"}}, ""), []string{"HTTP/1.1 413 "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := string(fe.send(t, tc.req))
			rest := got
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("answer %q lacks %q", got, w)
				}
				rest = rest[i+len(w):]
			}
			if strings.Contains(got, "Transfer-Encoding") || strings.Contains(got, "UWSGI_") {
				t.Errorf("answer %q has Transfer-Encoding or a UWSGI_ var", got)
			}
		})
	}
}

// TestUwsgiFrontEndDropsSilentClients: a client that connects and sends nothing, or half a
// head, or half a body, is dropped after the deadline, and nothing stays behind.
func TestUwsgiFrontEndDropsSilentClients(t *testing.T) {
	fe := startFrontEnd(t)
	fe.send(t, seedPackets(t)[0])
	baseG, baseFD := resources()
	post := packet(t, 0, []protocol.Var{{Key: "CONTENT_LENGTH", Value: "10"}}, "12345")
	for _, sent := range [][]byte{nil, post[:3], post[:12], post} {
		c, err := net.Dial("unix", fe.path)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, _ = c.Write(sent)
		_ = c.SetReadDeadline(start.Add(10 * time.Second))
		got, err := io.ReadAll(c) // no half-close: the client just stops sending
		c.Close()
		if err != nil {
			t.Fatalf("sent %q: the server kept the connection: %v", sent, err)
		}
		if took := time.Since(start); took < testHeadTimeout/2 || took > 5*time.Second {
			t.Errorf("sent %q: dropped after %s, want about %s", sent, took, testHeadTimeout)
		}
		if len(sent) == len(post) && !bytes.HasPrefix(got, []byte("HTTP/1.1 408 ")) {
			t.Errorf("half a body: answer %q, want a 408 (nginx's for client_body_timeout)", got)
		}
	}
	waitSettled(t, baseG, baseFD, nil)
}
