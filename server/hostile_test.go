package server

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
	"github.com/herd-server/herd/protocol"
)

// The hostile-client suite (issue 9, docs/RELIABILITY.md "Hostile clients"). One herd with two
// workers serves a normal client, who sends sequential GETs on a kept-alive connection, while
// each attack runs in turn: slowloris, slow readers, huge headers, a connection flood over
// --max-connections, the request-smuggling set, and malformed uwsgi packets. Before each
// attack the normal client's quiet p99 is measured again (the machine is shared: a baseline
// taken a minute earlier would measure the neighbours), then its p99 under the attack.
//
// The rule: attacked p99 <= max(2 x quiet p99, quiet p99 + 50 ms). The 50 ms floor is there
// because a quiet p99 of a few milliseconds doubles from one scheduler hiccup on two cores
// shared by eight engineers; an attack that costs the normal client anything real (a worker
// held, a queue, a stalled accept loop) costs seconds, far above it.
//
// HERD_HOSTILE_LONG=1 (make hostile) runs the long form: more samples and longer attacks.

// hostileScale is how big the suite runs: the short form for make test, the long one for
// make hostile.
type hostileScale struct {
	samples      int // normal requests per p99
	slowloris    int // connections trickling header bytes
	slowReaders  int
	readerSize   int // bytes each slow reader asks for
	maxConns     int // --max-connections
	floodFactor  int // flood connections = floodFactor x maxConns
	headerWait   time.Duration
	attackRounds int // times the smuggling set is sent in the background
	headSenders  int // clients sending huge heads, each every 200 ms
	// newClientInFlood measures how long a new client waits during the flood (a few
	// --header-timeout periods: long form only).
	newClientInFlood bool
}

func hostileScaleFor() hostileScale {
	s := hostileScale{samples: 200, slowloris: 500, slowReaders: 50, readerSize: 2 << 20,
		maxConns: 600, floodFactor: 3, headerWait: 5 * time.Second, attackRounds: 3, headSenders: 2}
	if os.Getenv("HERD_HOSTILE_LONG") == "1" {
		s.samples, s.slowReaders, s.attackRounds, s.headSenders = 2000, 200, 20, 8
		s.maxConns, s.slowloris, s.newClientInFlood = 1800, 1500, true
	}
	return s
}

// attackResult is one line of the suite's table.
type attackResult struct {
	name              string
	quiet, underFire  time.Duration
	refused, attempts int
	note              string
}

func (r attackResult) bound() time.Duration {
	return max(2*r.quiet, r.quiet+50*time.Millisecond)
}

type hostileSuite struct {
	t         *testing.T
	h         *herdtest.Instance
	scale     hostileScale
	client    *http.Client
	uwsgiPath string
	countFile string
	results   []attackResult
}

// TestHostileClients runs the suite and logs its table (the figures of docs/RELIABILITY.md).
func TestHostileClients(t *testing.T) {
	scale := hostileScaleFor()
	dir := t.TempDir()
	s := &hostileSuite{t: t, scale: scale, uwsgiPath: filepath.Join(dir, "u.sock"), countFile: filepath.Join(dir, "count")}
	if err := os.WriteFile(s.countFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s.h = herdtest.Start(t, herdtest.Options{Dir: testAppsDir(t), Env: []string{"HERD_HOSTILE_COUNT=" + s.countFile},
		Args: []string{"hostileapp:app", "--workers", "2", "--access-log", "off",
			"--max-connections", strconv.Itoa(scale.maxConns), "--header-timeout", scale.headerWait.String(),
			"--uwsgi-socket", "unix:" + s.uwsgiPath}})
	s.h.WaitReady(2, 60*time.Second)
	s.client = herdtest.Client()
	s.client.Timeout = 20 * time.Second

	s.run("slowloris", s.slowloris)
	s.run("slow readers", s.slowReaders)
	s.run("huge headers", s.hugeHeaders)
	s.run("connection flood", s.flood)
	s.run("request smuggling", s.smuggling)
	s.run("uwsgi front end", s.uwsgiPackets)

	if got := s.smuggledCount(); got != 0 {
		t.Errorf("%d requests hidden behind refused ones reached the app", got)
	}
	if !s.h.Running() {
		t.Fatal("herd died")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n| attack | quiet p99 | p99 under attack | bound | refused / attempts | notes |\n|---|---|---|---|---|---|\n")
	for _, r := range s.results {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d / %d | %s |\n", r.name, ms(r.quiet), ms(r.underFire), ms(r.bound()), r.refused, r.attempts, r.note)
	}
	t.Log(b.String())
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// run measures the quiet p99, then the p99 while attack runs; attack returns once its
// clients are in place, with a stop function and what it counted. A try over the bound is
// run again, quiet baseline and attack both, up to hostileTries times: what an attack really
// costs the normal client (a held worker, a stalled accept loop) shows in every try, while
// a neighbour's burst of CPU on the shared machine seldom hits three tries in a row.
func (s *hostileSuite) run(name string, attack func(t *testing.T, r *attackResult) (stop func())) {
	s.t.Run(name, func(t *testing.T) {
		var r attackResult
		for try := 1; ; try++ {
			r = attackResult{name: name, quiet: s.p99(t)}
			stop := attack(t, &r)
			r.underFire = s.p99(t)
			stop()
			t.Logf("try %d: quiet p99 %s, under attack %s (bound %s), refused %d of %d; %s", try, ms(r.quiet), ms(r.underFire), ms(r.bound()), r.refused, r.attempts, r.note)
			if !s.h.Running() {
				t.Fatalf("herd died under %s", name)
			}
			if r.underFire <= r.bound() || t.Failed() {
				break
			}
			if try == hostileTries {
				t.Errorf("the normal client's p99 went from %s to %s under %s: over max(2x, +50 ms) = %s in %d tries", ms(r.quiet), ms(r.underFire), name, ms(r.bound()), try)
				break
			}
		}
		s.results = append(s.results, r)
	})
}

const hostileTries = 3

// p99 is the normal client's 99th-percentile latency over sequential GETs on its kept-alive
// connection; every answer must be the app's.
func (s *hostileSuite) p99(t *testing.T) time.Duration {
	t.Helper()
	took := make([]time.Duration, 0, s.scale.samples)
	for range s.scale.samples {
		start := time.Now()
		status, body := herdtest.Get(t, s.client, s.h.URL+"/hello")
		took = append(took, time.Since(start))
		if status != 200 || body != "Hello, World!" {
			t.Fatalf("normal client got %d %q", status, body)
		}
	}
	slices.Sort(took)
	return took[len(took)*99/100]
}

// masterFDs counts the master's open descriptors.
func (s *hostileSuite) masterFDs() int {
	entries, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.h.Cmd.Process.Pid))
	return len(entries)
}

func (s *hostileSuite) smuggledCount() int {
	b, err := os.ReadFile(s.countFile)
	if err != nil {
		s.t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// holders owns a set of attacking connections, each with a goroutine that reads until the
// server closes it; close ends them all.
type holders struct {
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
	closed atomic.Int64 // connections the server closed
}

// add takes c and reads from it in its own goroutine: onData is called for each read.
func (hs *holders) add(c net.Conn, onData func(c net.Conn, n int) bool) {
	hs.mu.Lock()
	hs.conns = append(hs.conns, c)
	hs.mu.Unlock()
	hs.wg.Add(1)
	go func() {
		defer hs.wg.Done()
		buf := make([]byte, 1)
		for {
			n, err := c.Read(buf)
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					hs.closed.Add(1)
				}
				return
			}
			if onData != nil && !onData(c, n) {
				return
			}
		}
	}()
}

func (hs *holders) each(f func(i int, c net.Conn)) {
	hs.mu.Lock()
	conns := slices.Clone(hs.conns)
	hs.mu.Unlock()
	for i, c := range conns {
		f(i, c)
	}
}

func (hs *holders) close() {
	hs.each(func(_ int, c net.Conn) { _ = c.Close() })
	hs.wg.Wait()
}

func dialAll(t *testing.T, network, addr string, n int) []net.Conn {
	t.Helper()
	out := make([]net.Conn, 0, n)
	for range n {
		c, err := net.DialTimeout(network, addr, 10*time.Second)
		if err != nil {
			for _, c := range out {
				c.Close()
			}
			t.Fatalf("dial %d of %d: %v", len(out)+1, n, err)
		}
		out = append(out, c)
	}
	return out
}

// slowloris: connections that send a request head one byte a second and never finish it.
// Each costs the master a goroutine and a buffer until --header-timeout closes it.
func (s *hostileSuite) slowloris(t *testing.T, r *attackResult) func() {
	base := s.masterFDs()
	hs := &holders{}
	opened := time.Now() // the first connection's --header-timeout runs from about here
	for _, c := range dialAll(t, "tcp", s.h.Addr, s.scale.slowloris) {
		// The later heads of a kept-alive connection are timed by h1 (408): proxy/h1's
		// TestHeaderTimeouts.
		head := "GET /hello HTTP/1.1\r\nHost: a\r\nX-Slow: "
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatal(err)
		}
		hs.add(c, nil)
	}
	stop := make(chan struct{})
	trickled := make(chan struct{})
	go func() {
		defer close(trickled)
		// Every connection gets a byte about once a second, spread over the second.
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		next := 0
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			hs.each(func(i int, c net.Conn) {
				if i%50 == next {
					_, _ = c.Write([]byte("a"))
				}
			})
			next = (next + 1) % 50
		}
	}()
	if !herdtest.Poll(10*time.Second, func() bool { return s.masterFDs() >= base+s.scale.slowloris }) {
		t.Errorf("the master took only %d of %d slowloris connections", s.masterFDs()-base, s.scale.slowloris)
	}
	r.attempts = s.scale.slowloris
	return func() {
		// --header-timeout closes every one of them, trickling or not.
		ok := herdtest.Poll(s.scale.headerWait+15*time.Second, func() bool { return hs.closed.Load() == int64(s.scale.slowloris) })
		closedAfter := time.Since(opened)
		close(stop)
		<-trickled
		r.refused = int(hs.closed.Load())
		r.note = fmt.Sprintf("all closed by --header-timeout %s within %s", s.scale.headerWait, closedAfter.Round(100*time.Millisecond))
		hs.close()
		if !ok {
			t.Errorf("only %d of %d slowloris connections closed by the server %s after they opened (--header-timeout %s)",
				r.refused, s.scale.slowloris, closedAfter, s.scale.headerWait)
		}
		if closedAfter < s.scale.headerWait {
			t.Errorf("slowloris connections closed after %s, before --header-timeout %s", closedAfter, s.scale.headerWait)
		}
	}
}

// slowReaders: clients that ask for a large answer (2 MiB: over --response-buffer, so it is
// spooled to a file) with a small receive window and read it a byte a second. The master
// takes the answer off the worker whole, so the workers stay free.
func (s *hostileSuite) slowReaders(t *testing.T, r *attackResult) func() {
	hs := &holders{}
	var started atomic.Int64
	req := fmt.Sprintf("GET /big?n=%d HTTP/1.1\r\nHost: a\r\n\r\n", s.scale.readerSize)
	for _, c := range dialAll(t, "tcp", s.h.Addr, s.scale.slowReaders) {
		_ = c.(*net.TCPConn).SetReadBuffer(4096)
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		first := true
		hs.add(c, func(net.Conn, int) bool {
			if first {
				first = false
				started.Add(1)
			}
			time.Sleep(time.Second) // time is the subject: a reader of a byte a second
			return true
		})
	}
	if !herdtest.Poll(30*time.Second, func() bool { return started.Load() == int64(s.scale.slowReaders) }) {
		t.Errorf("only %d of %d slow readers got their first byte", started.Load(), s.scale.slowReaders)
	}
	r.attempts = s.scale.slowReaders
	r.note = fmt.Sprintf("%d KiB answers read at 1 byte/s", s.scale.readerSize>>10)
	return hs.close
}

// headerCase is one head of the huge-headers attack and the status it must get.
type headerCase struct {
	name   string
	head   string
	status int
}

func hugeHeaderCases() []headerCase {
	field := func(n, size int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "X-F%03d: %s\r\n", i, strings.Repeat("v", size-8))
		}
		return b.String()
	}
	return []headerCase{
		// 56 KiB of fields: within every limit and within a uwsgi packet.
		{"56 KiB head", "GET /hello HTTP/1.1\r\nHost: a\r\n" + field(7, 8000) + "\r\n", 200},
		// Over the 68 KiB ceiling (what a uwsgi packet carries) though within the field
		// limits: refused as soon as the ceiling is crossed, never parsed.
		{"72 KiB head", "GET /hello HTTP/1.1\r\nHost: a\r\n" + field(9, 8000) + "\r\n", 431},
		{"800 KiB head within the field limits", "GET /hello HTTP/1.1\r\nHost: a\r\n" + field(98, 8190) + "\r\n", 431},
		{"101 fields", "GET /hello HTTP/1.1\r\nHost: a\r\n" + field(100, 20) + "\r\n", 431},
		{"field of 8191 bytes", "GET /hello HTTP/1.1\r\nHost: a\r\n" + field(1, 8191) + "\r\n", 431},
		{"request line of 5000 bytes", "GET /" + strings.Repeat("a", 5000) + " HTTP/1.1\r\nHost: a\r\n\r\n", 414},
		// Past the head's ceiling without ever ending: refused once the ceiling is crossed.
		{"2 MiB head without end", "GET /hello HTTP/1.1\r\nHost: a\r\n" + strings.Repeat(field(1, 8000), 256), 431},
	}
}

// hugeHeaders: clients send heads up to and over the limits, each five times a second. Each must get its status; the master must stay up.
func (s *hostileSuite) hugeHeaders(t *testing.T, r *attackResult) func() {
	cases := hugeHeaderCases()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var attempts, refused atomic.Int64
	var mu sync.Mutex
	var wrong []string
	for g := range s.scale.headSenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
				}
				tc := cases[i%len(cases)]
				status, err := sendHead(s.h.Addr, tc.head)
				attempts.Add(1)
				if status >= 400 {
					refused.Add(1)
				}
				if err != nil || status != tc.status {
					mu.Lock()
					wrong = append(wrong, fmt.Sprintf("%s: got %d (%v), want %d", tc.name, status, err, tc.status))
					mu.Unlock()
				}
			}
		}()
	}
	// Every case once before the measurement, so that each shape is known to be met.
	if !herdtest.Poll(30*time.Second, func() bool { return attempts.Load() >= int64(2*len(cases)) }) {
		t.Errorf("only %d huge heads sent", attempts.Load())
	}
	return func() {
		close(stop)
		wg.Wait()
		r.attempts, r.refused = int(attempts.Load()), int(refused.Load())
		r.note = fmt.Sprintf("%d clients, each a head every 200 ms: 56 KiB (200), 72 KiB to 2 MiB (431), 101 fields (431), a request line of 5000 bytes (414)", s.scale.headSenders)
		for _, w := range wrong {
			t.Error(w)
		}
	}
}

// sendHead writes head on a new connection and returns the status of the answer. The
// writing goes on in its own goroutine: the server may answer (and stop reading) first.
func sendHead(addr, head string) (int, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		_, _ = io.WriteString(c, head)
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	_ = c.Close() // ends a write the server no longer reads
	<-wrote
	if err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}

// flood: floodFactor x --max-connections connections that connect and send nothing. The
// master accepts up to its limit and leaves the rest in the kernel's backlog: its descriptor
// count and memory stay bounded. Once the flood goes away, new clients are served at once.
func (s *hostileSuite) flood(t *testing.T, r *attackResult) func() {
	pid := s.h.Cmd.Process.Pid
	baseFDs, baseRSS := s.masterFDs(), procStatusKiB(t, pid, "VmRSS")
	n := s.scale.floodFactor * s.scale.maxConns
	hs := &holders{}
	for _, c := range dialAll(t, "tcp", s.h.Addr, n) {
		hs.add(c, nil)
	}
	// The flood keeps itself up: each connection the master closes (--header-timeout) is
	// replaced at once, as an attacker would.
	stopRefill := make(chan struct{})
	refilled := make(chan struct{})
	var redialed atomic.Int64
	go func() {
		defer close(refilled)
		for replaced := int64(0); ; {
			select {
			case <-stopRefill:
				return
			case <-time.After(50 * time.Millisecond):
			}
			for ; replaced < hs.closed.Load(); replaced++ {
				c, err := net.DialTimeout("tcp", s.h.Addr, time.Second)
				if err != nil {
					break
				}
				hs.add(c, nil)
				redialed.Add(1)
			}
		}
	}()
	// The normal client holds one of the slots: the master reaches its limit with it.
	limitFDs := baseFDs - 1 + s.scale.maxConns
	// A few descriptors of the quiet count may be passing ones (a body file, a log write).
	if !herdtest.Poll(10*time.Second, func() bool { return s.masterFDs() >= limitFDs-8 }) {
		t.Errorf("the master holds %d descriptors under a flood of %d, want %d (its limit)", s.masterFDs(), n, limitFDs)
	}
	var peakFDs int
	var peakRSS int64
	sample := func() {
		peakFDs = max(peakFDs, s.masterFDs())
		peakRSS = max(peakRSS, procStatusKiB(t, pid, "VmRSS"))
	}
	sample()
	// A new client in the flood waits for a slot: measured, not bounded here (it is the
	// price of any connection limit; see docs/RELIABILITY.md). At once, before the flood's
	// connections time out and free their slots.
	inFlood := ""
	if s.scale.newClientInFlood {
		inFlood = "; a new client waited " + s.newClientWait(t).String() + " in the flood"
	}
	r.attempts, r.refused = n, n-s.scale.maxConns
	return func() {
		sample()
		close(stopRefill)
		<-refilled
		hs.close()
		start := time.Now()
		for range 20 {
			c := herdtest.Client() // a new connection each
			if status, body := herdtest.Get(t, c, s.h.URL+"/hello"); status != 200 || body != "Hello, World!" {
				t.Errorf("after the flood: %d %q", status, body)
			}
		}
		after := time.Since(start)
		// Headroom: descriptors the master opens besides client connections (a worker
		// connection, a log write) while the flood is on.
		const fdSlack = 16
		r.note = fmt.Sprintf("%d connections (%d more dialed as the master timed some out) on --max-connections %d: master fds %d -> peak %d (bound %d), RSS %d -> peak %d MiB%s; 20 new clients after it: %s",
			n, redialed.Load(), s.scale.maxConns, baseFDs, peakFDs, limitFDs+fdSlack, baseRSS>>10, peakRSS>>10, inFlood, after.Round(time.Millisecond))
		if peakFDs > limitFDs+fdSlack {
			t.Errorf("master descriptors peaked at %d under the flood: over --max-connections %d + %d", peakFDs, s.scale.maxConns, baseFDs+fdSlack)
		}
		// An idle connection costs the master a goroutine and a read buffer: a few KiB
		// (more under -race). 64 KiB each is a bound with room.
		if grew := peakRSS - baseRSS; grew > int64(s.scale.maxConns)*64 {
			t.Errorf("master RSS grew by %d KiB under the flood: over 64 KiB per allowed connection", grew)
		}
		if after > 10*time.Second {
			t.Errorf("20 new clients after the flood took %s", after)
		}
	}
}

// newClientWait is how long a client that connects during the flood waits for its answer:
// its connection waits in the backlog behind the flood's until --header-timeout frees slots.
func (s *hostileSuite) newClientWait(t *testing.T) time.Duration {
	c := herdtest.Client()
	c.Timeout = time.Duration(s.scale.floodFactor+1) * (s.scale.headerWait + 5*time.Second)
	start := time.Now()
	resp, err := c.Get(s.h.URL + "/hello")
	if err != nil {
		t.Errorf("a new client in the flood: %v", err)
		return time.Since(start).Round(time.Millisecond)
	}
	resp.Body.Close()
	return time.Since(start).Round(time.Millisecond)
}

// smuggleCase is a request shape that a front proxy and herd might frame differently. Each
// is sent with a request for /smuggled... behind it: refused ones must get their status and
// a closed connection, and the hidden request must never reach the app (the app counts).
// Accepted ones are unambiguous: every reader frames them alike, so they must be answered
// as framed, with the request behind them as the next pipelined one (to /hello).
type smuggleCase struct {
	name   string
	raw    string
	status int // of the refusal; 0: accepted, answered with body, then the next request
	body   string
}

func smugglingCases() []smuggleCase {
	const host = "Host: a\r\n"
	post := "POST /echo HTTP/1.1\r\n" + host
	refused := func(name, raw string) smuggleCase { return smuggleCase{name: name, raw: raw, status: 400} }
	return []smuggleCase{
		refused("CL then TE", post+"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
		refused("TE then CL", post+"Transfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\n"),
		refused("TE: chunked, identity", post+"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
		refused("TE: chunked then TE: identity", post+"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n"),
		refused("TE: xchunked", post+"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
		refused("TE: \"chunked\"", post+"Transfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n"),
		refused("TE: chunked, chunked", post+"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"),
		refused("TE: identity", post+"Transfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello"),
		refused("TE with a tab before the colon", post+"Transfer-Encoding\t: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"),
		refused("Transfer-Encoding : chunked", post+"Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"),
		refused("TE value with a vertical tab", post+"Transfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n"),
		refused("TE folded onto the line before", post+"X-A: b\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
		refused("TE value folded", post+"Transfer-Encoding: identity\r\n chunked\r\n\r\n0\r\n\r\n"),
		refused("TE in HTTP/1.0", "POST /echo HTTP/1.0\r\n"+host+"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
		{name: "TE: gzip, chunked (RFC 9112: 501)", raw: post + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", status: 501},
		refused("duplicate CL, different values", post+"Content-Length: 5\r\nContent-Length: 41\r\n\r\nhello"),
		refused("CL list, different values", post+"Content-Length: 5, 41\r\n\r\nhello"),
		refused("CL +5", post+"Content-Length: +5\r\n\r\nhello"),
		refused("CL -5", post+"Content-Length: -5\r\n\r\nhello"),
		refused("CL 0x5", post+"Content-Length: 0x5\r\n\r\nhello"),
		refused("CL 5 5", post+"Content-Length: 5 5\r\n\r\nhello"),
		refused("CL past int64", post+"Content-Length: 99999999999999999999\r\n\r\nhello"),
		refused("CL with a NUL", post+"Content-Length: 5\x00\r\n\r\nhello"),
		refused("bare LF line ends", "POST /echo HTTP/1.1\nHost: a\nContent-Length: 5\n\nhello"),
		refused("bare LF after the request line", "POST /echo HTTP/1.1\n"+host+"Content-Length: 5\r\n\r\nhello"),
		refused("bare LF ending the head", post+"Content-Length: 5\r\n\nhello"),
		refused("bare CR in a field", post+"X-A: b\rContent-Length: 0\r\nContent-Length: 5\r\n\r\nhello"),
		refused("obs-fold", post+"X-A: b\r\n c\r\nContent-Length: 5\r\n\r\nhello"),
		refused("NUL in a field name", post+"X-\x00A: b\r\nContent-Length: 5\r\n\r\nhello"),
		refused("NUL in a field value", post+"X-A: b\x00c\r\nContent-Length: 5\r\n\r\nhello"),
		refused("chunk size overflowing int64", post+"Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nhello\r\n0\r\n\r\n"),
		refused("chunk size 0x5", post+"Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n"),
		refused("chunk size -5", post+"Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"),
		refused("chunk size with a bare LF", post+"Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"),
		refused("chunk longer than its size", post+"Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n"),
		refused("chunk extension with a bare LF", post+"Transfer-Encoding: chunked\r\n\r\n5;a=b\nhello\r\n0\r\n\r\n"),
		refused("chunk extension of 5000 bytes", post+"Transfer-Encoding: chunked\r\n\r\n5;a="+strings.Repeat("b", 5000)+"\r\nhello\r\n0\r\n\r\n"),
		refused("last chunk with a bare LF", post+"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\n\n"),
		refused("folded trailer", post+"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nT: 1\r\n 2\r\n\r\n"),
		refused("HTTP/1.2", "GET /hello HTTP/1.2\r\n"+host+"\r\n"),
		refused("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
		refused("empty line before the request line", "\r\nGET /hello HTTP/1.1\r\n"+host+"\r\n"),

		{name: "duplicate CL, same value", raw: post + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", body: "hello"},
		{name: "CL 005", raw: post + "Content-Length: 005\r\n\r\nhello", body: "hello"},
		{name: "CL with spaces around", raw: post + "Content-Length:   5  \r\n\r\nhello", body: "hello"},
		{name: "TE: CHUNKED", raw: post + "Transfer-Encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n", body: "hello"},
		{name: "chunk extensions and size 0005", raw: post + "Transfer-Encoding: chunked\r\n\r\n0005;a=b;c=\"d;e\"\r\nhello\r\n0;x\r\n\r\n", body: "hello"},
		{name: "underscore Transfer_Encoding is not TE", raw: post + "Transfer_Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello", body: "hello"},
	}
}

// smuggleResult sends one case, with the hidden request behind it, and says what happened.
func sendSmuggle(addr string, tc smuggleCase) (statuses []int, bodies []string, closed bool, err error) {
	hidden := "GET /smuggled-" + strings.NewReplacer(" ", "-", "/", "-").Replace(tc.name) + " HTTP/1.1\r\nHost: a\r\n\r\n"
	if tc.status == 0 {
		hidden = "GET /hello HTTP/1.1\r\nHost: a\r\n\r\n"
	}
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, nil, false, err
	}
	defer c.Close()
	if _, err := io.WriteString(c, tc.raw+hidden); err != nil {
		return nil, nil, false, err
	}
	br := bufio.NewReader(c)
	for {
		// An answer comes at once; an open connection with nothing more is seen after the
		// short wait, once the expected answers are in.
		wait := 10 * time.Second
		if (tc.status != 0 && len(statuses) >= 1) || len(statuses) >= 2 {
			wait = 300 * time.Millisecond
		}
		_ = c.SetReadDeadline(time.Now().Add(wait))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			var ne net.Error
			return statuses, bodies, !(errors.As(err, &ne) && ne.Timeout()), nil
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		statuses, bodies = append(statuses, resp.StatusCode), append(bodies, string(b))
	}
}

// judgeSmuggle returns what is wrong with how a case was answered, or "".
func judgeSmuggle(tc smuggleCase, statuses []int, bodies []string, closed bool) string {
	if tc.status != 0 {
		if len(statuses) != 1 || statuses[0] != tc.status || !closed {
			return fmt.Sprintf("got %v (closed %v), want one %d and a close", statuses, closed, tc.status)
		}
		return ""
	}
	if len(statuses) != 2 || statuses[0] != 200 || bodies[0] != tc.body || bodies[1] != "Hello, World!" {
		return fmt.Sprintf("got %v %q, want 200 %q then the pipelined /hello", statuses, bodies, tc.body)
	}
	return ""
}

// smuggling: every case once, checked; then the whole set again and again in the background
// while the normal client is measured.
func (s *hostileSuite) smuggling(t *testing.T, r *attackResult) func() {
	cases := smugglingCases()
	for _, tc := range cases {
		statuses, bodies, closed, err := sendSmuggle(s.h.Addr, tc)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if wrong := judgeSmuggle(tc, statuses, bodies, closed); wrong != "" {
			t.Errorf("%s: %s", tc.name, wrong)
		}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	var attempts, refused atomic.Int64
	var wrongMu sync.Mutex
	var wrong []string
	go func() {
		defer close(done)
		for round := 0; round < s.scale.attackRounds; round++ {
			for _, tc := range cases {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				statuses, bodies, closed, err := sendSmuggle(s.h.Addr, tc)
				attempts.Add(1)
				if tc.status != 0 && len(statuses) == 1 && statuses[0] == tc.status {
					refused.Add(1)
				}
				if w := judgeSmuggle(tc, statuses, bodies, closed); err != nil || w != "" {
					wrongMu.Lock()
					wrong = append(wrong, fmt.Sprintf("%s (in the background): %v %s", tc.name, err, w))
					wrongMu.Unlock()
				}
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		accepted := 0
		for _, tc := range cases {
			if tc.status == 0 {
				accepted++
			}
		}
		r.attempts, r.refused = int(attempts.Load())+len(cases), int(refused.Load())+len(cases)-accepted
		r.note = fmt.Sprintf("%d shapes: %d refused (400, or 501 for an unknown coding) with a close, %d unambiguous ones answered as framed; %d hidden requests reached the app",
			len(cases), len(cases)-accepted, accepted, s.smuggledCount())
		for _, w := range wrong {
			t.Error(w)
		}
	}
}

// uwsgiCase is one packet sent to the uwsgi front end (the socket nginx's uwsgi_pass uses)
// and what must come back: a status line prefix, or nothing at all ("") before the close.
type uwsgiCase struct {
	name string
	data []byte
	want string
}

func uwsgiPacket(t *testing.T, modifier1 uint8, vars []protocol.Var, body string) []byte {
	t.Helper()
	p, err := protocol.AppendPacket(nil, 0, vars)
	if err != nil {
		t.Fatal(err)
	}
	p[0] = modifier1
	return append(p, body...)
}

func uwsgiCases(t *testing.T) []uwsgiCase {
	get := func(path string, more ...protocol.Var) []protocol.Var {
		return append([]protocol.Var{{Key: "REQUEST_METHOD", Value: "GET"}, {Key: "PATH_INFO", Value: path}, {Key: "CONTENT_LENGTH", Value: ""}}, more...)
	}
	post := func(cl ...string) []protocol.Var {
		vars := []protocol.Var{{Key: "REQUEST_METHOD", Value: "POST"}, {Key: "PATH_INFO", Value: "/echo"}}
		for _, v := range cl {
			vars = append(vars, protocol.Var{Key: "CONTENT_LENGTH", Value: v})
		}
		return vars
	}
	hello := uwsgiPacket(t, 0, get("/hello"), "")
	var many []protocol.Var
	for i := range 7000 {
		many = append(many, protocol.Var{Key: fmt.Sprintf("K%04d", i)})
	}
	// A vars block of 65535 bytes, the most a packet holds: with the var the master adds,
	// it no longer fits in the packet to the worker.
	full := get("/hello")
	size, _ := protocol.VarsSize(full)
	full = append(full, protocol.Var{Key: "HTTP_X", Value: strings.Repeat("v", protocol.MaxVarsSize-size-4-len("HTTP_X"))})
	badKey := []byte{0, 10, 0, 0, 0xff, 0xff, 'a', 'b', 'c', 'd', 'e', 'f'}
	return []uwsgiCase{
		{"modifier1 5", uwsgiPacket(t, 5, get("/smuggled-uwsgi-modifier"), ""), ""},
		{"an HTTP request", []byte("GET /smuggled-uwsgi-http HTTP/1.1\r\nHost: a\r\n\r\n"), ""},
		{"truncated packet header", hello[:2], ""},
		{"vars block shorter than its header says", hello[:10], ""},
		{"key length past the block", badKey, ""},
		{"65535-byte vars block", uwsgiPacket(t, 0, full, ""), "HTTP/1.1 431 "},
		{"7000 vars", uwsgiPacket(t, 0, append(get("/hello"), many...), ""), "HTTP/1.1 200 "},
		{"empty vars block", uwsgiPacket(t, 0, nil, ""), "HTTP/1.1 200 "},
		{"CONTENT_LENGTH -1", uwsgiPacket(t, 0, post("-1"), "hello"), "HTTP/1.1 400 "},
		{"CONTENT_LENGTH +5", uwsgiPacket(t, 0, post("+5"), "hello"), "HTTP/1.1 400 "},
		{"body shorter than CONTENT_LENGTH", uwsgiPacket(t, 0, post("50"), "hello"), "HTTP/1.1 400 "},
		// The last value counts, as in the worker: the body is framed by what the app sees.
		{"CONTENT_LENGTH twice", uwsgiPacket(t, 0, post("5", "0"), "hello"), "HTTP/1.1 200 "},
		// One request per connection: a second packet behind the first is never read.
		{"a second packet behind the first", append(slices.Clone(hello), uwsgiPacket(t, 0, get("/smuggled-uwsgi-second"), "")...), "HTTP/1.1 200 "},
	}
}

// sendUwsgi writes data, half-closes, and returns all the server sent before closing.
func sendUwsgi(path string, data []byte) (string, error) {
	c, err := net.DialTimeout("unix", path, 10*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	_, _ = c.Write(data) // the server may refuse before reading it all
	_ = c.(*net.UnixConn).CloseWrite()
	out, err := io.ReadAll(c)
	if err != nil && !isConnReset(err) {
		return string(out), fmt.Errorf("the server did not close the connection: %w", err)
	}
	return string(out), nil
}

func isConnReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

// uwsgiPackets: each malformed or oversized packet is refused (or answered as framed)
// without a crash, a hidden request never reaches the app, and a good request right after
// each is served. Then the set goes on in the background while the normal client is measured.
func (s *hostileSuite) uwsgiPackets(t *testing.T, r *attackResult) func() {
	cases := uwsgiCases(t)
	hello := uwsgiPacket(t, 0, []protocol.Var{{Key: "PATH_INFO", Value: "/hello"}}, "")
	check := func(tc uwsgiCase, got string, err error) string {
		switch {
		case err != nil:
			return err.Error()
		case tc.want == "" && got != "":
			return fmt.Sprintf("answered %.80q, want a close without an answer", got)
		case !strings.HasPrefix(got, tc.want):
			return fmt.Sprintf("answered %.80q, want %q", got, tc.want)
		}
		return ""
	}
	for _, tc := range cases {
		got, err := sendUwsgi(s.uwsgiPath, tc.data)
		if w := check(tc, got, err); w != "" {
			t.Errorf("%s: %s", tc.name, w)
		}
		if got, err := sendUwsgi(s.uwsgiPath, hello); err != nil || !strings.HasSuffix(got, "Hello, World!") {
			t.Fatalf("after %s: a good request got %q, %v", tc.name, got, err)
		}
	}
	// In the background only the shapes refused before a worker sees them: the ones the app
	// answers are ordinary load on the two workers, which any client may send.
	var refusedShapes []uwsgiCase
	for _, tc := range cases {
		if !strings.HasPrefix(tc.want, "HTTP/1.1 200 ") {
			refusedShapes = append(refusedShapes, tc)
		}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	var attempts, refused atomic.Int64
	var wrongMu sync.Mutex
	var wrong []string
	go func() {
		defer close(done)
		for round := 0; round < s.scale.attackRounds; round++ {
			for _, tc := range refusedShapes {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				got, err := sendUwsgi(s.uwsgiPath, tc.data)
				attempts.Add(1)
				if !strings.HasPrefix(got, "HTTP/1.1 200 ") {
					refused.Add(1)
				}
				if w := check(tc, got, err); w != "" {
					wrongMu.Lock()
					wrong = append(wrong, fmt.Sprintf("%s (in the background): %s", tc.name, w))
					wrongMu.Unlock()
				}
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		r.attempts, r.refused = int(attempts.Load()), int(refused.Load())
		r.note = fmt.Sprintf("%d packet shapes over the Unix socket once each, the %d refused ones in a loop: wrong modifier, HTTP, truncated, bad key length (closed unanswered), 64 KiB vars (431), bad CONTENT_LENGTH (400)", len(cases), len(refusedShapes))
		for _, w := range wrong {
			t.Error(w)
		}
	}
}
