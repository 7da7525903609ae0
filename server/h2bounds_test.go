package server

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// TestHTTP2Bounds: issue 21's fifth and sixth attacks over HTTP/2, from a client that
// misbehaves on purpose (x/net/http2's Framer). HTTP/2 gets HTTP/1's bounds: 431 past
// --limit-request-fields fields or a field over --limit-request-field-size (500 fields and
// one field of 60,000 bytes reached the app); 400 for an :authority no Host header could
// carry (`a b`, `x/y`, `a<b>` reached HTTP_HOST); 200 streams announcing a 1 MB body and
// sending none of it hold no --body-memory (they reserved all of it) and are given up after
// --body-timeout (they stayed past --header-timeout and --keep-alive); a connection that
// sends no request is closed after --header-timeout. No refused request reaches the app:
// each one's path is /smuggled..., which the app counts.
func TestHTTP2Bounds(t *testing.T) {
	t.Parallel() // it waits on timeouts, mostly
	countFile := filepath.Join(t.TempDir(), "count")
	if err := os.WriteFile(countFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h := herdtest.Start(t, herdtest.Options{Dir: testAppsDir(t), Env: []string{"HERD_HOSTILE_COUNT=" + countFile}, Admin: true,
		Args: []string{"hostileapp:app", "--workers", "2", "--access-log", "off", "--h2c",
			"--body-timeout", "2s", "--header-timeout", "2s", "--body-memory", "16MiB"}})
	h.WaitReady(2, 60*time.Second)

	t.Run("fields", func(t *testing.T) {
		c := dialH2C(t, h.Addr, true)
		fields := func(n, size int) []string {
			var out []string
			for i := range n {
				name := fmt.Sprintf("x-f%03d", i)
				out = append(out, name, strings.Repeat("v", size-len(name)-2))
			}
			return out
		}
		for i, tc := range []struct {
			name   string
			fields []string
			path   string
			want   int
		}{
			{"500 fields", fields(500, 16), "/smuggled-h2-500-fields", 431},
			{"a field of 60,000 bytes", fields(1, 60000), "/smuggled-h2-60000", 431},
			{"a field of 8191 bytes", fields(1, 8191), "/smuggled-h2-8191", 431},
			{"100 fields with the host", fields(100, 16), "/smuggled-h2-100-fields", 431},
			{"99 fields with the host", fields(99, 16), "/hello", 200},
			{"a field of 8190 bytes", fields(1, 8190), "/hello", 200},
		} {
			id := uint32(2*i + 1)
			c.request(id, "GET", "a", tc.path, true, tc.fields...)
			if got := c.answered(id, 10*time.Second); got != tc.want {
				t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
			}
		}
	})
	t.Run(":authority", func(t *testing.T) {
		c := dialH2C(t, h.Addr, true)
		for i, authority := range []string{"a b", "x/y", "a<b>", `a"b`, `a"><script>x()</`} {
			id := uint32(2*i + 1)
			c.request(id, "GET", authority, "/smuggled-h2-authority", true)
			if got := c.answered(id, 10*time.Second); got != 400 {
				t.Errorf(":authority %q: %d, want 400", authority, got)
			}
		}
		c.request(99, "GET", "example.com:8080", "/hello", true)
		if got := c.answered(99, 10*time.Second); got != 200 {
			t.Errorf("a good :authority: %d", got)
		}
	})
	t.Run("stalled bodies", func(t *testing.T) {
		const streams = 200
		c := dialH2C(t, h.Addr, true)
		start := time.Now()
		for i := range streams {
			c.request(uint32(2*i+1), "POST", "a", "/smuggled-h2-stalled", false, "content-length", "1000000")
		}
		herdtest.Eventually(t, 10*time.Second, "every stalled stream in the master", func() bool {
			return adminCounter(t, h.AdminURL, "herd_http_requests_in_flight") >= streams
		})
		if held := adminCounter(t, h.AdminURL, "herd_body_memory_bytes"); held != 0 {
			t.Errorf("%d streams that sent no body byte hold %v bytes of --body-memory", streams, held)
		}
		for i := range streams {
			id := uint32(2*i + 1)
			s := c.waitStream(id, 10*time.Second, "the stalled stream given up", func(s h2Stream) bool { return s.status != 0 || s.reset })
			if s.status != 0 && s.status != 408 {
				t.Fatalf("stream %d: %d, want 408", id, s.status)
			}
		}
		took := time.Since(start)
		if took < 2*time.Second {
			t.Errorf("the stalled streams were given up after %v, before --body-timeout", took)
		}
		t.Logf("%d stalled streams given up after %v", streams, took.Round(time.Millisecond))
	})
	t.Run("no request", func(t *testing.T) {
		c := dialH2C(t, h.Addr, true)
		start := time.Now()
		herdtest.Eventually(t, 10*time.Second, "a connection without a request closed", func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.ended != nil
		})
		if took := time.Since(start); took < 2*time.Second {
			t.Errorf("closed after %v, before --header-timeout", took)
		}
	})
	if n := countLines(t, countFile); n != 0 {
		t.Errorf("%d refused HTTP/2 requests reached the app", n)
	}
}

// TestAbsoluteFormHost: item 6 of issue 21 over HTTP/1.1. An absolute-form target's
// authority becomes the request's host, so it gets the Host header's check: with a good
// Host, `GET http://a"><script>x()</r HTTP/1.1` made Flask's url_for(_external=True) return
// that string. Now each such target gets 400 and never reaches the app.
func TestAbsoluteFormHost(t *testing.T) {
	countFile := filepath.Join(t.TempDir(), "count")
	if err := os.WriteFile(countFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h := herdtest.Start(t, herdtest.Options{Dir: testAppsDir(t), Env: []string{"HERD_HOSTILE_COUNT=" + countFile},
		Args: []string{"hostileapp:app", "--workers", "1", "--access-log", "off"}})
	h.WaitReady(1, 60*time.Second)
	for _, target := range []string{`http://a"><script>x()</r`, `http://a"><script>x()</smuggled-abs`,
		"http://a<b>/smuggled-abs", `http://a"b/smuggled-abs`, "http://a%20b/smuggled-abs"} {
		status, err := sendHead(h.Addr, "GET "+target+" HTTP/1.1\r\nHost: good.example\r\n\r\n")
		if err != nil || status != 400 {
			t.Errorf("GET %s: %d, %v; want 400", target, status, err)
		}
	}
	if status, err := sendHead(h.Addr, "GET http://good.example/hello HTTP/1.1\r\nHost: good.example\r\n\r\n"); err != nil || status != 200 {
		t.Errorf("a good absolute-form target: %d, %v", status, err)
	}
	if n := countLines(t, countFile); n != 0 {
		t.Errorf("%d requests with a bad absolute-form host reached the app", n)
	}
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}
