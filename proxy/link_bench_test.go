package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
	"github.com/herd-server/herd/protocol"
)

// BenchmarkWorkerLink answers the question issue 8 asked of the master's link to its
// workers: is one uwsgi request after another on a kept connection (modifier2 = 1, the
// answer framed by its length) worth it over a connection per request, as nginx's
// uwsgi_pass does (modifier2 = 0, the answer ended by the close)? One standalone worker on
// the hello app, a Unix socket, one request at a time:
//
//	go test ./proxy -run '^$' -bench WorkerLink -benchtime 3s
func BenchmarkWorkerLink(b *testing.B) {
	python := herdtest.RequireTool(b, "/usr/bin/python3", "python3")
	dir := b.TempDir()
	script := filepath.Join(herdtest.RepoRoot(b), "scripts", "herd_worker")
	sock := filepath.Join(dir, "w.sock")
	apps := filepath.Join(herdtest.RepoRoot(b), "bench", "apps")
	cmd := exec.Command(python, script, "--app", "hello:app", "--bind", "unix:"+sock, "--chdir", apps)
	cmd.Dir, cmd.Stderr = apps, os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	herdtest.Eventually(b, 30*time.Second, "the worker listening", func() bool {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	req := httptest.NewRequest("GET", "/", nil)
	measure := func(b *testing.B, one func() error) {
		b.ReportAllocs()
		self, worker := selfCPU(), pidCPU(cmd.Process.Pid)
		for b.Loop() {
			if err := one(); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(selfCPU()-self)/float64(time.Microsecond)/float64(b.N), "master-us/op")
		b.ReportMetric(float64(pidCPU(cmd.Process.Pid)-worker)/float64(time.Microsecond)/float64(b.N), "worker-us/op")
	}

	b.Run("connection-per-request", func(b *testing.B) {
		packet, err := protocol.AppendPacket(nil, 0, directVars)
		if err != nil {
			b.Fatal(err)
		}
		measure(b, func() error {
			c, err := net.Dial("unix", sock)
			if err != nil {
				return err
			}
			defer c.Close()
			if _, err := c.Write(packet); err != nil {
				return err
			}
			answer, err := io.ReadAll(c) // ended by the worker's close
			if err != nil || !strings.HasSuffix(string(answer), "Hello, World!") {
				return fmt.Errorf("answer %q: %v", answer, err)
			}
			return nil
		})
	})
	b.Run("kept-connection", func(b *testing.B) {
		packet, err := protocol.AppendPacket(nil, protocol.ModifierKeepAlive, directVars)
		if err != nil {
			b.Fatal(err)
		}
		c, err := net.Dial("unix", sock)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		r := bufio.NewReader(c)
		measure(b, func() error {
			if _, err := c.Write(packet); err != nil {
				return err
			}
			return readHello(r, req)
		})
	})
}

// pidCPU is the user + system time of one process, from /proc (USER_HZ = 100); 0 when it
// is gone.
func pidCPU(pid int) time.Duration {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}
