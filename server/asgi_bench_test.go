package server

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/herd-server/herd/internal/herdtest"
)

// BenchmarkASGIWebSockets holds 10,000 idle WebSockets open through herd (two asgi workers
// of scripts/testapps/asgiapp.py) and reports the master's resident memory with them
// (issue 20's goal: under 200 MB), then measures the echo round trip's p99 with 1,000
// sockets sending at once. Run with a herd built without -race:
//
//	go build -o bin/herd ./cmd/herd
//	HERD_TEST_BINARY=$PWD/bin/herd go test ./server -run '^$' -bench ASGIWebSockets -benchtime 1x
//
// HERD_BENCH_WS_IDLE and HERD_BENCH_WS_ACTIVE change the counts.
func BenchmarkASGIWebSockets(b *testing.B) {
	idle := envInt("HERD_BENCH_WS_IDLE", 10000)
	active := envInt("HERD_BENCH_WS_ACTIVE", 1000)
	nofile := raiseFileLimit(b, 2*idle+1024)
	if most := (int(nofile)-256)/2 - 100; idle > most {
		// herd bounds its connections at (RLIMIT_NOFILE - 256) / 2 (server/maxconn.go), and
		// a hard limit this process cannot raise caps that.
		b.Logf("the open-file limit %d lets herd hold %d connections: %d sockets instead of %d", nofile, most+100, most, idle)
		idle = most
	}
	dir := filepath.Join(herdtest.RepoRoot(b), "scripts", "testapps")
	h := herdtest.Start(b, herdtest.Options{Dir: dir, Admin: true, Args: []string{"asgiapp:app", "-w", "2",
		"--worker-connections", strconv.Itoa(idle/2 + active), "--max-connections", strconv.Itoa(idle + active + 100),
		"--access-log", "off"}})
	h.WaitStatus(30*time.Second, "two workers ready", func(st herdtest.Status) bool {
		return len(st.Workers) == 2 && st.Workers[0].State == "ready" && st.Workers[1].State == "ready"
	})
	base := rssOf(h.Cmd.Process.Pid)
	d := websocket.Dialer{HandshakeTimeout: 30 * time.Second, ReadBufferSize: 512, WriteBufferSize: 512}
	url := "ws://" + h.Addr + "/ws"
	conns := make([]*websocket.Conn, 0, idle)
	start := time.Now()
	for len(conns) < idle {
		c, _, err := d.Dial(url, nil)
		if err != nil {
			b.Fatalf("socket %d: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	opened := time.Since(start)
	// Each socket answers once, so that every one is open through to its app.
	for _, c := range conns[:100] {
		_ = c.WriteMessage(websocket.TextMessage, []byte("x"))
		if _, _, err := c.ReadMessage(); err != nil {
			b.Fatal(err)
		}
	}
	rss := rssOf(h.Cmd.Process.Pid)
	b.Logf("%d idle WebSockets opened in %s; master RSS %.1f MiB (%.1f MiB before them, %.1f KiB each)",
		idle, opened.Round(time.Millisecond), mib(rss), mib(base), float64(rss-base)/1024/float64(idle))
	b.ReportMetric(mib(rss), "master-MiB")
	_, metrics := herdtest.Get(b, herdtest.Client(), h.AdminURL+"/metrics")
	b.Logf("the master's Go runtime: %s", goMemory(metrics))

	p50, p99, n := echoLatency(b, conns[:active], 10*time.Second)
	b.Logf("echo over %d active sockets (%d idle beside them): %d round trips, p50 %s, p99 %s",
		active, idle-active, n, p50, p99)
	b.ReportMetric(float64(p99.Microseconds())/1000, "echo-p99-ms")
	for _, c := range conns {
		c.Close()
	}
}

// echoLatency has every socket send a message and wait for its echo, in a loop, for d;
// it returns the round trips' p50 and p99 and their count.
func echoLatency(b *testing.B, conns []*websocket.Conn, d time.Duration) (time.Duration, time.Duration, int) {
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	msg := []byte(strings.Repeat("m", 64))
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(end) {
				t0 := time.Now()
				if err := c.WriteMessage(websocket.TextMessage, msg); err != nil {
					b.Error(err)
					return
				}
				if _, _, err := c.ReadMessage(); err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(all) == 0 {
		b.Fatal("no round trip")
	}
	slices.Sort(all)
	return all[len(all)/2], all[len(all)*99/100], len(all)
}

// raiseFileLimit raises this process's open-file limit (which herd inherits) toward n, as
// far as the hard limit allows, and returns the limit in force.
func raiseFileLimit(b *testing.B, n int) uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	if lim.Cur < uint64(n) {
		lim.Cur = min(uint64(n), lim.Max)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			b.Fatal(err)
		}
	}
	return lim.Cur
}

func rssOf(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// goMemory picks the Go runtime's memory figures from /metrics.
func goMemory(metrics string) string {
	var out []string
	for _, line := range strings.Split(metrics, "\n") {
		for _, name := range []string{"go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes", "go_goroutines", "go_memstats_heap_idle_bytes"} {
			if rest, ok := strings.CutPrefix(line, name+" "); ok {
				v, _ := strconv.ParseFloat(rest, 64)
				if strings.HasSuffix(name, "bytes") {
					out = append(out, fmt.Sprintf("%s %.1f MiB", strings.TrimPrefix(name, "go_memstats_"), v/(1<<20)))
				} else {
					out = append(out, fmt.Sprintf("%s %.0f", strings.TrimPrefix(name, "go_"), v))
				}
			}
		}
	}
	return strings.Join(out, ", ")
}
