package server

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// nginxConf balances over the herds as a production config would: keep-alive connections
// to the upstreams, and proxy_next_upstream on connection errors and timeouts only (nginx's
// default, spelled out), so a refused or reset connection is retried on the other herd while
// any error herd itself answers (502, 503) would reach the client and fail the test.
const nginxConf = `user root;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    upstream herds {
        server %[2]s;
        server %[3]s;
        keepalive 16;
    }
    server {
        listen %[4]s;
        location / {
            proxy_pass http://herds;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 2;
            proxy_connect_timeout 2s;
        }
    }
}
`

// startNginx runs nginx balancing over two HTTP upstreams.
func startNginx(t *testing.T, upstreamA, upstreamB string) string {
	t.Helper()
	return runNginx(t, func(dir, listen string) string {
		return fmt.Sprintf(nginxConf, dir, upstreamA, upstreamB, listen)
	})
}

// runNginx runs Debian's nginx in the foreground with the config that conf writes for its
// temp dir and listen address, and waits until it accepts connections. It returns the
// base URL.
func runNginx(t *testing.T, conf func(dir, listen string) string) string {
	t.Helper()
	bin := herdtest.RequireTool(t, "nginx", "nginx")
	herdtest.RequireRoot(t, "nginx runs with user root and binds as root here")
	dir := t.TempDir()
	addr := herdtest.FreeAddr(t)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf(dir, addr)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", confPath, "-p", dir, "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		_ = cmd.Wait()
		if t.Failed() {
			if log, err := os.ReadFile(filepath.Join(dir, "error.log")); err == nil {
				t.Logf("nginx error.log:\n%s", log)
			}
		}
	})
	herdtest.WaitListening(t, addr, 10*time.Second, "nginx")
	return "http://" + addr
}

// load sends GETs from several clients until stopped, counting successes and failures.
type load struct {
	ok, failed atomic.Int64
	firstErr   atomic.Value
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startLoad(url string, clients int) *load {
	l := &load{stop: make(chan struct{})}
	c := herdtest.Client()
	for range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				l.one(c, url)
			}
		}()
	}
	return l
}

func (l *load) one(c *http.Client, url string) {
	resp, err := c.Get(url)
	if err == nil {
		var body []byte
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && (resp.StatusCode != 200 || string(body) != "hello\n") {
			err = fmt.Errorf("status %d, body %q", resp.StatusCode, body)
		}
	}
	if err != nil {
		l.failed.Add(1)
		l.firstErr.CompareAndSwap(nil, err.Error())
		return
	}
	l.ok.Add(1)
}

// waitOK waits until n more requests succeeded.
func (l *load) waitOK(t *testing.T, n int64, timeout time.Duration) {
	t.Helper()
	target := l.ok.Load() + n
	herdtest.EventuallyNil(t, timeout, fmt.Sprintf("%d more requests to succeed", n), func() error {
		if ok := l.ok.Load(); ok < target {
			return fmt.Errorf("%d of %d succeeded", ok, target)
		}
		return nil
	})
}

func (l *load) finish() {
	close(l.stop)
	l.wg.Wait()
}

func accessCount(h *herdtest.Instance) int {
	n := 0
	for _, ev := range h.Events() {
		if ev.Str("component") == "access" {
			n++
		}
	}
	return n
}

// TestNginxBalancesOverTwoHerdsAndOneStopsUnderLoad: nginx balances over two herds on
// loopback; one of them gets SIGTERM under load. Its graceful stop closes its listener
// first, so nginx's new connections are refused and retried on the other herd, and the
// requests it holds finish: no client sees a failure.
func TestNginxBalancesOverTwoHerdsAndOneStopsUnderLoad(t *testing.T) {
	opts := herdtest.Options{Dir: testdataDir(t), Args: []string{"deployapp:app", "--workers", "2"}}
	a := herdtest.Start(t, opts)
	b := herdtest.Start(t, opts)
	a.WaitReady(2, 30*time.Second)
	b.WaitReady(2, 30*time.Second)
	url := startNginx(t, a.Addr, b.Addr)

	l := startLoad(url+"/", 8)
	defer l.finish()
	l.waitOK(t, 500, 30*time.Second)
	if err := a.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := a.Wait(30 * time.Second); code != 0 {
		t.Errorf("the stopped herd exited %d, want 0", code)
	}
	servedByB := accessCount(b)
	l.waitOK(t, 500, 30*time.Second)
	l.finish()
	l.stop = make(chan struct{}) // the deferred finish finds nothing left to stop

	t.Logf("requests: %d ok, %d failed; herd A served %d, herd B %d (%d after A stopped)",
		l.ok.Load(), l.failed.Load(), accessCount(a), accessCount(b), accessCount(b)-servedByB)
	if f := l.failed.Load(); f != 0 {
		t.Errorf("%d requests failed; first: %v", f, l.firstErr.Load())
	}
	if accessCount(a) == 0 || accessCount(b)-servedByB < 500 {
		t.Errorf("nginx did not balance: A served %d, B %d after A stopped", accessCount(a), accessCount(b)-servedByB)
	}
}
