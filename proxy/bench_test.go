package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/herd-server/herd/internal/herdtest"
	"github.com/herd-server/herd/protocol"
	"github.com/herd-server/herd/proxy"
	"github.com/herd-server/herd/proxy/h1"
	"github.com/herd-server/herd/supervisor"
	"github.com/herd-server/herd/supervisor/spawn"
)

// The proxy's per-request cost against real Python workers serving bench/apps/hello.py:
//
//	go test ./proxy -run '^$' -bench . -benchtime 3s
//
// BenchmarkWorkerDirect is the floor: a fixed uwsgi request written on a leased worker
// connection and its answer read back, no HTTP. BenchmarkHandler adds the proxy:
// proxy.Handler.ServeHTTP on an in-memory request (vars, packet, dispatch, response copy).
// BenchmarkHTTP adds the HTTP server (herd's h1, and Go's net/http beside it) on loopback
// with keep-alive Go clients in the same process.
// Each reports master-us/op (CPU of this test process, the client's too in BenchmarkHTTP)
// and worker-us/op (CPU of the worker processes): the master's share is what herd's Go side
// costs per request, the worker's what the Python side does.

// workers starts a real pool of n Python workers on the hello app and stops it after b.
func workers(b *testing.B, n int) *supervisor.Pool {
	b.Helper()
	python := herdtest.RequireTool(b, "/usr/bin/python3", "python3")
	dir := b.TempDir()
	script := filepath.Join(herdtest.RepoRoot(b), "scripts", "herd_worker")
	apps := filepath.Join(herdtest.RepoRoot(b), "bench", "apps")
	pool := supervisor.NewPool(1024, 30*time.Second)
	sup := supervisor.New(supervisor.Options{
		Workers:         n,
		Threads:         1,
		BootTimeout:     30 * time.Second,
		GracefulTimeout: 5 * time.Second,
		RunDir:          dir,
		Spawner: &spawn.Exec{Python: python, WorkerScript: script,
			Args: []string{"--app", "hello:app", "--threads", "1", "--chdir", apps}, Dir: apps},
		Log: zerolog.Nop(),
	}, pool)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	b.Cleanup(func() {
		sup.Stop(true)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			b.Error("supervisor did not stop within 10s")
		}
		cancel()
	})
	select {
	case <-sup.Ready():
	case err := <-done:
		b.Fatalf("supervisor stopped before a worker was ready: %v", err)
	case <-time.After(30 * time.Second):
		b.Fatal("no worker ready within 30s")
	}
	// The pool has no readiness event per worker to wait on: its snapshot is polled.
	herdtest.Eventually(b, 30*time.Second, fmt.Sprintf("%d workers ready", n), func() bool { return readyWorkers(pool) >= n })
	return pool
}

func readyWorkers(pool *supervisor.Pool) int {
	n := 0
	for _, w := range pool.Workers() {
		if w.State == supervisor.Ready {
			n++
		}
	}
	return n
}

// cpuMeter measures CPU time per operation of this process and of the pool's workers.
type cpuMeter struct {
	pool         *supervisor.Pool
	self, worker time.Duration
}

func startCPU(pool *supervisor.Pool) *cpuMeter {
	return &cpuMeter{pool: pool, self: selfCPU(), worker: workerCPU(pool)}
}

func (m *cpuMeter) report(b *testing.B) {
	b.ReportMetric(float64(selfCPU()-m.self)/float64(time.Microsecond)/float64(b.N), "master-us/op")
	b.ReportMetric(float64(workerCPU(m.pool)-m.worker)/float64(time.Microsecond)/float64(b.N), "worker-us/op")
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// workerCPU sums the CPU time of the live workers.
func workerCPU(pool *supervisor.Pool) time.Duration {
	var total time.Duration
	for _, w := range pool.Workers() {
		total += pidCPU(w.Pid)
	}
	return total
}

// backend adapts the pool to the proxy, as cmd/herd does.
type backend struct{ pool *supervisor.Pool }

func (b backend) Acquire(ctx context.Context) (proxy.Lease, error) {
	l, err := b.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	return benchLease{l}, nil
}

// benchLease: the bench's workers speak uwsgi, never the framed link.
type benchLease struct{ *supervisor.Lease }

func (benchLease) Stream() proxy.Stream { return nil }

// directVars is the fixed request of BenchmarkWorkerDirect.
var directVars = []protocol.Var{
	{Key: "REQUEST_METHOD", Value: "GET"}, {Key: "REQUEST_URI", Value: "/"}, {Key: "PATH_INFO", Value: "/"},
	{Key: "QUERY_STRING", Value: ""}, {Key: "SERVER_PROTOCOL", Value: "HTTP/1.1"},
	{Key: "SERVER_NAME", Value: "127.0.0.1"}, {Key: "SERVER_PORT", Value: "8000"},
	{Key: "REMOTE_ADDR", Value: "127.0.0.1"}, {Key: "REMOTE_PORT", Value: "40000"},
	{Key: "HTTP_HOST", Value: "127.0.0.1:8000"}, {Key: "wsgi.url_scheme", Value: "http"},
}

// BenchmarkWorkerDirect sends the request as the master's keep-alive link does with
// classic uwsgi vars (modifier2 = 1); BenchmarkWorkerDirectNUL with NUL-joined vars
// (modifier2 = 2).
func BenchmarkWorkerDirect(b *testing.B) {
	packet, err := protocol.AppendPacket(nil, protocol.ModifierKeepAlive, directVars)
	if err != nil {
		b.Fatal(err)
	}
	benchWorkerDirect(b, packet)
}

func BenchmarkWorkerDirectNUL(b *testing.B) {
	packet, ok, err := protocol.AppendPacketNUL(nil, directVars)
	if !ok || err != nil {
		b.Fatal(ok, err)
	}
	benchWorkerDirect(b, packet)
}

func benchWorkerDirect(b *testing.B, packet []byte) {
	pool := workers(b, 1)
	req := httptest.NewRequest("GET", "/", nil)
	ctx := context.Background()
	b.ReportAllocs()
	cpu := startCPU(pool)
	for b.Loop() { // the body runs once: one pool for all iterations
		lease, err := pool.Acquire(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := lease.Send(packet, nil, nil); err != nil {
			b.Fatal(err)
		}
		if err := readHello(lease.Reader(), req); err != nil {
			b.Fatal(err)
		}
		lease.Release(true)
	}
	b.StopTimer()
	cpu.report(b)
}

func readHello(r *bufio.Reader, req *http.Request) error {
	resp, err := http.ReadResponse(r, req)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || string(body) != "Hello, World!" {
		return fmt.Errorf("answer %d %q: %v", resp.StatusCode, body, err)
	}
	return nil
}

// discard is the least a ResponseWriter can do, so the figure is the proxy's.
type discard struct {
	h      http.Header
	status int
	n      int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) WriteHeader(status int)      { d.status = status }
func (d *discard) Write(p []byte) (int, error) { d.n += len(p); return len(p), nil }

func BenchmarkHandler(b *testing.B) {
	pool := workers(b, 1)
	h := &proxy.Handler{Backend: backend{pool}, Log: zerolog.Nop(), BodyBuffer: 1 << 20, TempDir: b.TempDir()}
	req := httptest.NewRequest("GET", "http://127.0.0.1:8000/", nil)
	req.RemoteAddr = "127.0.0.1:40000"
	w := &discard{h: make(http.Header)}
	b.ReportAllocs()
	cpu := startCPU(pool)
	for b.Loop() {
		clear(w.h)
		w.status, w.n = 0, 0
		h.ServeHTTP(w, req)
		if w.status != 200 || w.n != 13 {
			b.Fatalf("answer %d with %d bytes", w.status, w.n)
		}
	}
	b.StopTimer()
	cpu.report(b)
}

// BenchmarkHTTP is the whole master on loopback: the HTTP server (h1, herd's own, as on
// --http with or without --h2c; net-http, Go's, for comparison), proxy, 2 workers, with 8
// concurrent keep-alive clients in this process.
func BenchmarkHTTP(b *testing.B) {
	for _, front := range []string{"h1", "net-http"} {
		b.Run(front, func(b *testing.B) { benchHTTP(b, front) })
	}
}

func benchHTTP(b *testing.B, front string) {
	pool := workers(b, 2)
	h := &proxy.Handler{Backend: backend{pool}, Log: zerolog.Nop(), BodyBuffer: 1 << 20, TempDir: b.TempDir()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	if front == "h1" {
		srv := &h1.Server{Handler: h, HeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		b.Cleanup(func() { _ = srv.Close() })
	} else {
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		b.Cleanup(func() { _ = srv.Close() })
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}
	b.Cleanup(client.CloseIdleConnections)
	url := "http://" + ln.Addr().String() + "/"
	b.ReportAllocs()
	b.SetParallelism(4) // x GOMAXPROCS goroutines
	b.ResetTimer()
	cpu := startCPU(pool)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.StopTimer()
	cpu.report(b)
}

// BenchmarkUwsgiFront is the uwsgi front end as nginx uses it (uwsgi_pass): a new Unix
// connection per request, nginx's vars, the answer read to the connection's end; 2 workers.
func BenchmarkUwsgiFront(b *testing.B) {
	pool := workers(b, 2)
	h := &proxy.Handler{Backend: backend{pool}, Log: zerolog.Nop(), BodyBuffer: 1 << 20, TempDir: b.TempDir()}
	sock := filepath.Join(b.TempDir(), "front.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	srv := &proxy.UwsgiServer{Handler: h, HeadTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })
	packet, err := protocol.AppendPacket(nil, 0, []protocol.Var{
		{Key: "QUERY_STRING", Value: ""}, {Key: "REQUEST_METHOD", Value: "GET"},
		{Key: "CONTENT_TYPE", Value: ""}, {Key: "CONTENT_LENGTH", Value: ""},
		{Key: "REQUEST_URI", Value: "/"}, {Key: "PATH_INFO", Value: "/"},
		{Key: "DOCUMENT_ROOT", Value: "/usr/share/nginx/html"}, {Key: "SERVER_PROTOCOL", Value: "HTTP/1.1"},
		{Key: "REQUEST_SCHEME", Value: "http"}, {Key: "REMOTE_ADDR", Value: "127.0.0.1"},
		{Key: "REMOTE_PORT", Value: "40000"}, {Key: "SERVER_PORT", Value: "8080"},
		{Key: "SERVER_NAME", Value: ""}, {Key: "HTTP_HOST", Value: "127.0.0.1:8080"},
		{Key: "HTTP_USER_AGENT", Value: "wrk"},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetParallelism(4)
	b.ResetTimer()
	cpu := startCPU(pool)
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 4096)
		for pb.Next() {
			c, err := net.Dial("unix", sock)
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := c.Write(packet); err != nil {
				b.Error(err)
			}
			n := 0
			for {
				m, err := c.Read(buf[n:])
				n += m
				if err != nil {
					break
				}
			}
			c.Close()
			if !bytes.HasPrefix(buf[:n], []byte("HTTP/1.1 200 OK")) {
				b.Errorf("answer %q", buf[:n])
				return
			}
		}
	})
	b.StopTimer()
	cpu.report(b)
}
