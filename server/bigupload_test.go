package server

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// patternReader yields n bytes of a repeating, position-dependent pattern without holding
// them: the client side of the test must not need a gigabyte either.
type patternReader struct{ off, n int64 }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	b = b[:min(int64(len(b)), p.n-p.off)]
	for i := range b {
		x := p.off + int64(i)
		b[i] = byte(x ^ x>>8 ^ x>>16)
	}
	p.off += int64(len(b))
	return len(b), nil
}

// TestGigabyteUploadKeepsMasterSmall: a 1 GiB body passes whole (the app counts and hashes
// it) while the master holds at most --body-buffer of it in memory: the rest goes through an
// unlinked temporary file. The bound is 64 MiB of RSS for the master; the race
// detector's shadow memory inflates a -race binary, so its baseline is subtracted there.
func TestGigabyteUploadKeepsMasterSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 2 GiB through disk and sockets; run without -short")
	}
	const size = int64(1) << 30
	h := herdtest.Start(t, herdtest.Options{Args: []string{"app:app", "--workers", "1", "--access-log", "off"}})
	h.WaitReady(1, 20*time.Second)
	master := h.Cmd.Process.Pid
	before := procStatusKiB(t, master, "VmRSS")

	digest := sha256.New()
	body := io.TeeReader(&patternReader{n: size}, digest)
	req, err := http.NewRequest("POST", h.URL+"/count", body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	c := &http.Client{Timeout: 5 * time.Minute}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := fmt.Sprintf("%d %s\n", size, hex.EncodeToString(digest.Sum(nil)))
	if resp.StatusCode != 200 || string(answer) != want {
		t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, answer, want)
	}

	peak := procStatusKiB(t, master, "VmHWM")
	t.Logf("master RSS before %d KiB, peak %d KiB over a 1 GiB upload", before, peak)
	limit := int64(64 << 10)
	if raceBuild() {
		limit += before
	}
	if peak > limit {
		t.Fatalf("master peak RSS %d KiB, want under %d KiB", peak, limit)
	}
	// The spilled body is unlinked as soon as it is created: nothing is left in the
	// runtime directory.
	entries, _ := os.ReadDir(h.RunDir())
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "body-") {
			t.Fatalf("temporary body file %s left behind", e.Name())
		}
	}
}

func procStatusKiB(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			var kib int64
			if _, err := fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), &kib); err == nil {
				return kib
			}
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// raceBuild reports whether the herd binary under test was built with -race.
func raceBuild() bool { return herdtest.RaceEnabled }

// TestMaxBodySize: a body over --max-body-size gets 413 whether its length is announced
// (refused before it is read) or chunked (refused when the limit is crossed); one under it
// passes.
func TestMaxBodySize(t *testing.T) {
	h := herdtest.Start(t, herdtest.Options{Args: []string{"app:app", "--workers", "1", "--max-body-size", "1MiB"}})
	h.WaitReady(1, 20*time.Second)
	c := herdtest.Client()
	post := func(n int64, chunked bool) int {
		t.Helper()
		var body io.Reader = &patternReader{n: n}
		req, err := http.NewRequest("POST", h.URL+"/count", body)
		if err != nil {
			t.Fatal(err)
		}
		if !chunked {
			req.ContentLength = n
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("POST %d bytes (chunked %v): %v", n, chunked, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		n       int64
		chunked bool
		want    int
	}{
		{512 << 10, false, 200}, {512 << 10, true, 200}, {1 << 20, false, 200},
		{2 << 20, false, 413}, {2 << 20, true, 413},
	} {
		if got := post(tc.n, tc.chunked); got != tc.want {
			t.Errorf("POST %d bytes (chunked %v): %d, want %d", tc.n, tc.chunked, got, tc.want)
		}
	}
}
