package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// A response larger than --response-buffer goes to a temporary file, so a client that
// reads it slowly does not hold the worker: with one worker, another request is served
// while the slow client has not read a byte.
func TestSlowReaderOfALargeAnswerHoldsNoWorker(t *testing.T) {
	for _, spool := range []string{"1GiB", "0"} {
		t.Run("spool="+spool, func(t *testing.T) {
			h := herdtest.Start(t, herdtest.Options{Dir: testAppsDir(t), Args: []string{"fixture:app", "--workers", "1",
				"--response-buffer", "1MiB", "--response-spool", spool}})
			h.WaitReady(1, 20*time.Second)
			// More than the kernel's socket buffers hold (4 MiB to send, 6 MiB to receive).
			const size = 24 << 20
			slow, err := net.Dial("tcp", h.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer slow.Close()
			fmt.Fprintf(slow, "GET /big?n=%d HTTP/1.1\r\nHost: x\r\n\r\n", size)
			time.Sleep(300 * time.Millisecond) // the answer is under way; nobody reads it

			client := herdtest.Client()
			client.Timeout = 2 * time.Second
			resp, err := client.Get(h.URL + "/hello")
			served := err == nil && resp.StatusCode == 200
			if resp != nil {
				resp.Body.Close()
			}
			if spool == "0" {
				// The control: without spooling the slow reader holds the only worker.
				if served {
					t.Fatal("served behind an unspooled slow reader: the test cannot tell spooling apart")
				}
				return
			}
			if !served {
				t.Fatalf("a request behind a slow reader of a spooled answer: %v", err)
			}
			got, err := http.ReadResponse(bufio.NewReader(slow), nil)
			if err != nil {
				t.Fatal(err)
			}
			n, err := io.Copy(io.Discard, got.Body)
			if err != nil || n != size || got.ContentLength != size {
				t.Fatalf("slow reader got %d of %d bytes (Content-Length %d): %v", n, size, got.ContentLength, err)
			}
		})
	}
}
