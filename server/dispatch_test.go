package server

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// clientLoop runs n clients requesting url in a loop until stop is closed; each answer's
// status, body and latency go to record.
func clientLoop(wg *sync.WaitGroup, stop <-chan struct{}, n int, url string, record func(status int, body string, took time.Duration, err error)) {
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				resp, err := c.Get(url)
				if err != nil {
					record(0, "", time.Since(start), err)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				record(resp.StatusCode, string(b), time.Since(start), nil)
			}
		}()
	}
}

// TestNoHeadOfLineBlocking: two workers, four clients on a fast view and one on a view that
// takes 1.5 s. While one worker serves the slow view the other is free, so no fast request
// may wait for the slow one: the slowest fast request stays far below 1.5 s. (With
// pipelining, a fast request sent behind the slow one on its worker waited it out.)
func TestNoHeadOfLineBlocking(t *testing.T) {
	h := herdtest.Start(t, herdtest.Options{Dir: testdataDir(t), Args: []string{"dispatchapp:app", "--workers", "2", "--access-log", "off"}})
	h.WaitReady(2, 30*time.Second)
	var (
		mu      sync.Mutex
		fast    []time.Duration
		slowRun atomic.Int64
		errs    []string
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	clientLoop(&wg, stop, 4, h.URL+"/fast", func(status int, body string, took time.Duration, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil || status != 200 {
			errs = append(errs, fmt.Sprintf("fast: %d %v", status, err))
			return
		}
		fast = append(fast, took)
	})
	clientLoop(&wg, stop, 1, h.URL+"/slow?s=1.5", func(status int, _ string, _ time.Duration, err error) {
		if err == nil && status == 200 {
			slowRun.Add(1)
		}
	})
	herdtest.Eventually(t, 30*time.Second, "three slow requests served among the fast ones", func() bool { return slowRun.Load() >= 3 })
	close(stop)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d failed requests, first: %s", len(errs), errs[0])
	}
	slices.Sort(fast)
	worst := fast[len(fast)-1]
	p99 := fast[len(fast)*99/100]
	t.Logf("%d fast requests beside %d slow ones: p99 %v, slowest %v", len(fast), slowRun.Load(), p99, worst)
	if worst > 750*time.Millisecond {
		t.Fatalf("a fast request took %v while a worker was free: it waited behind the slow view", worst)
	}
}

// TestNoCollateralFailures: one request in a hundred ends its worker mid-request
// (os._exit). Those requests get 502; every other request, sent to the same workers by
// eight clients meanwhile, gets its answer: a worker's death costs no request it did not
// read.
func TestNoCollateralFailures(t *testing.T) {
	h := herdtest.Start(t, herdtest.Options{Dir: testdataDir(t), Args: []string{"dispatchapp:app", "--workers", "2", "--access-log", "off"}})
	h.WaitReady(2, 30*time.Second)
	var (
		mu         sync.Mutex
		ok, exits  int
		collateral []string
		n          atomic.Int64
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				path := "/fast"
				if n.Add(1)%100 == 0 {
					path = "/exit"
				}
				resp, err := c.Get(h.URL + path)
				status := 0
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					status = resp.StatusCode
				}
				mu.Lock()
				switch {
				case path == "/exit":
					exits++
					if status != http.StatusBadGateway {
						collateral = append(collateral, fmt.Sprintf("/exit: %d %v, want 502", status, err))
					}
				case status == 200:
					ok++
				default:
					collateral = append(collateral, fmt.Sprintf("/fast: %d %v", status, err))
				}
				mu.Unlock()
			}
		}()
	}
	herdtest.Eventually(t, 60*time.Second, "30 worker deaths under load", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return exits >= 30
	})
	close(stop)
	wg.Wait()
	t.Logf("%d requests answered, %d worker deaths", ok, exits)
	if len(collateral) > 0 {
		t.Fatalf("%d requests failed that did not end their worker, first: %s", len(collateral), collateral[0])
	}
}
