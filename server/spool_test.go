package server

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
			// The answer is under way (nobody reads it) once the worker has taken the request.
			h.WaitStatus(10*time.Second, "the large answer's request taken by the worker", func(st herdtest.Status) bool { return st.Taken() == 1 })

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

// A spooled answer reaches the client as the worker writes it, not once it is whole: an app
// that yields 4 MiB a megabyte at a time, 0.4 s apart, has its first megabyte read by the
// client long before its last is written.
func TestSpooledAnswerStartsAtOnce(t *testing.T) {
	h := herdtest.Start(t, herdtest.Options{Dir: testAppsDir(t), Args: []string{"fixture:app", "--workers", "1",
		"--response-buffer", "1MiB"}})
	h.WaitReady(1, 20*time.Second)
	const part, parts, pause = 1 << 20, 4, 400 * time.Millisecond
	// The app takes 3 pauses (1.2 s) to write it all; the first part is there after about
	// a Python start's worth of nothing.
	first, whole := timePacedAnswer(t, h.URL, part, parts, pause)
	if first > whole-pause {
		t.Fatalf("first megabyte after %v, the whole answer after %v: the client waited for the spool to fill", first, whole)
	}
}

// A worker that dies in the middle of a spooled answer cuts the client's connection (the
// head went out already, as it does from nginx), and the next request is served.
func TestWorkerDyingMidSpoolCutsTheAnswer(t *testing.T) {
	h := herdtest.Start(t, herdtest.Options{Dir: testAppsDir(t), Args: []string{"fixture:app", "--workers", "1",
		"--response-buffer", "1MiB"}})
	h.WaitReady(1, 20*time.Second)
	client := herdtest.Client()
	resp, err := client.Get(h.URL + "/bigpaced?n=4&pause=0.1&die=2")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil || n >= 4<<20 {
		t.Fatalf("the answer of a worker that died after 2 of 4 MiB: %d bytes, err %v; want a cut", n, err)
	}
	h.WaitReady(1, 20*time.Second)
	resp, err = client.Get(h.URL + "/hello")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("next request: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestBodyMemoryBoundsBufferedAnswers: an answer under --response-buffer is read whole
// before the client gets a byte, unless --body-memory has no room for it: it then goes
// through a spool file, and its first part reaches the client while the app still writes.
// The control, with no bound, shows the whole answer waited for.
func TestBodyMemoryBoundsBufferedAnswers(t *testing.T) {
	for _, c := range []struct {
		bodyMemory string
		spooled    bool
	}{{"1MiB", true}, {"0", false}} {
		t.Run("body-memory "+c.bodyMemory, func(t *testing.T) {
			t.Parallel()
			h := herdtest.Start(t, herdtest.Options{Dir: testAppsDir(t), Args: []string{"fixture:app", "--workers", "1",
				"--response-buffer", "4MiB", "--body-memory", c.bodyMemory}})
			h.WaitReady(1, 20*time.Second)
			const part, parts, pause = 512 << 10, 4, 400 * time.Millisecond
			first, whole := timePacedAnswer(t, h.URL, part, parts, pause)
			if early := first < whole-pause; early != c.spooled {
				t.Fatalf("first part after %v, whole after %v: spooled %v, want %v", first, whole, early, c.spooled)
			}
		})
	}
}

// timePacedAnswer asks the fixture app for parts parts of part bytes with pause between
// them, and returns when the first part and the whole answer arrived. It fails the test
// when the answer is short, or came too fast for the app to have paused.
func timePacedAnswer(t *testing.T, url string, part, parts int, pause time.Duration) (first, whole time.Duration) {
	t.Helper()
	start := time.Now()
	resp, err := herdtest.Client().Get(fmt.Sprintf("%s/bigpaced?n=%d&size=%d&pause=%g", url, parts, part, pause.Seconds()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ContentLength != int64(parts*part) {
		t.Fatalf("Content-Length %d, want %d", resp.ContentLength, parts*part)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, part)); err != nil {
		t.Fatal(err)
	}
	first = time.Since(start)
	n, err := io.Copy(io.Discard, resp.Body)
	whole = time.Since(start)
	if err != nil || n != int64((parts-1)*part) {
		t.Fatalf("after the first part: %d bytes, %v", n, err)
	}
	if whole < time.Duration(parts-1)*pause {
		t.Fatalf("whole answer in %v: the app cannot have paused, the test cannot tell", whole)
	}
	return first, whole
}
