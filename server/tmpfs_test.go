package server

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// TestFullTempDir: issue 21's third attack, on a real full disk. herd's temporary files
// live in its runtime directory under TMPDIR, here an 8 MiB tmpfs. A 20 MiB answer (over
// --response-buffer, so spooled) whose spool fills the tmpfs still reaches its client
// whole, 200 with every byte: what the spool holds, then the rest straight from the worker
// (before: 200 with 5 MB and a reset). A 20 MiB upload that fills it is answered 507, the
// server's storage, with a log line (before: 400, blaming the client). Afterwards the tmpfs
// is empty again and the app still serves.
func TestFullTempDir(t *testing.T) {
	herdtest.RequireRoot(t, "mounts a tmpfs")
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() { // after herd's own cleanup; its workers may take a moment to exit
		if !herdtest.Poll(10*time.Second, func() bool { return exec.Command("umount", dir).Run() == nil }) {
			_ = exec.Command("umount", "-l", dir).Run()
		}
	})
	h := herdtest.Start(t, herdtest.Options{Dir: testAppsDir(t), Env: []string{"TMPDIR=" + dir, "HERD_HOSTILE_COUNT=/dev/null"},
		Args: []string{"hostileapp:app", "--workers", "1", "--access-log", "off"}})
	h.WaitReady(1, 60*time.Second)
	baseline := usedBytes(t, dir)
	client := herdtest.Client()
	const size = 20 << 20

	resp, err := client.Get(fmt.Sprintf("%s/big?n=%d", h.URL, size))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || len(got) != size || bytes.Count(got, []byte("x")) != size {
		t.Fatalf("a 20 MiB answer through a full spool: %d, %d bytes, %v", resp.StatusCode, len(got), err)
	}
	if _, _, ok := h.WaitEvent(0, 5*time.Second, func(e herdtest.Event) bool {
		return strings.Contains(e.Msg(), "spool could not be written") && strings.Contains(e.Str("error"), "no space left")
	}); !ok {
		t.Error("the log does not say the spool could not be written")
	}

	resp, err = client.Post(h.URL+"/echo", "application/octet-stream", io.LimitReader(&patternReader{n: size}, size))
	if err != nil {
		t.Fatalf("a 20 MiB upload into a full temporary directory: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInsufficientStorage {
		t.Fatalf("a 20 MiB upload into a full temporary directory: %d, want 507", resp.StatusCode)
	}
	if _, _, ok := h.WaitEvent(0, 5*time.Second, func(e herdtest.Event) bool {
		return e.Str("level") == "error" && strings.Contains(e.Str("error"), "no space left")
	}); !ok {
		t.Error("the log does not say the upload met a full disk")
	}

	herdtest.Eventually(t, 10*time.Second, "the tmpfs emptied of herd's temporary files", func() bool {
		return usedBytes(t, dir) <= baseline
	})
	if status, body := herdtest.Get(t, client, h.URL+"/hello"); status != 200 || body != "Hello, World!" {
		t.Fatalf("after: %d %q", status, body)
	}
}

// usedBytes is how much of the filesystem at dir is in use.
func usedBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize
}
