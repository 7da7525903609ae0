package server

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// TestBodyMemoryBoundsTheHeap: issue 21's eighth point. 128 clients at once upload bodies
// of 512 KiB and a byte, echoed back, three times over, with --body-memory 32MiB: the
// buffers hold 1 MiB each, and count so, bodies and answers together, with the buffers
// kept for reuse. The master's heap (go_memstats_heap_sys_bytes, what the Go runtime took
// from the kernel for it, which does not shrink: its peak) grows by less than 1.5 x
// --body-memory, the rest being copy buffers, connections and the collector's slack.
// (Counted by their lengths in pooled 1 MiB buffers, --body-memory 128MiB let the master
// reach 226 MiB.)
func TestBodyMemoryBoundsTheHeap(t *testing.T) {
	const budget = 32 << 20
	h := herdtest.Start(t, herdtest.Options{Dir: testAppsDir(t), Env: []string{"HERD_HOSTILE_COUNT=/dev/null"}, Admin: true,
		Args: []string{"hostileapp:app", "--workers", "2", "--access-log", "off", "--body-memory", "32MiB"}})
	h.WaitReady(2, 60*time.Second)
	before := adminCounter(t, h.AdminURL, "go_memstats_heap_sys_bytes")
	payload := bytes.Repeat([]byte("b"), 512<<10+1)
	client := herdtest.Client()
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = 128
	var peakHeld float64
	for round := range 3 {
		var wg sync.WaitGroup
		errs := make(chan error, 128)
		for range 128 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := client.Post(h.URL+"/echo", "application/octet-stream", bytes.NewReader(payload))
				if err != nil {
					errs <- err
					return
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || n != int64(len(payload)) {
					errs <- fmt.Errorf("round %d: %d, %d bytes, %v", round, resp.StatusCode, n, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		held := adminCounter(t, h.AdminURL, "herd_body_memory_bytes") + adminCounter(t, h.AdminURL, "herd_body_memory_kept_bytes")
		peakHeld = max(peakHeld, held)
		if held > budget {
			t.Fatalf("round %d: %v bytes of --body-memory held, past its %d", round, held, budget)
		}
	}
	grew := adminCounter(t, h.AdminURL, "go_memstats_heap_sys_bytes") - before
	t.Logf("heap grew by %.1f MiB under 3 x 128 echoes of 512 KiB + 1 (--body-memory 32 MiB, %.1f MiB of it held after)", grew/(1<<20), peakHeld/(1<<20))
	if grew > 1.5*budget {
		t.Fatalf("the master's heap grew by %.1f MiB, past 1.5 x --body-memory", grew/(1<<20))
	}
}
