// Package admin is herd's observability: Prometheus metrics, health and readiness checks,
// the /stats JSON document, the live dashboard, and the HTTP server that serves them on
// --admin. It only observes: it hears requests through proxy.Handler.OnDone and workers
// through supervisor.Observer, reads pool snapshots, and never changes what the master does.
package admin

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/herd-server/herd/proxy"
	"github.com/herd-server/herd/supervisor"
	"github.com/herd-server/herd/supervisor/spawn"
)

// PoolView is what the admin side reads of the worker pool (*supervisor.Pool).
type PoolView interface {
	Workers() []supervisor.WorkerInfo
	QueueLen() int
}

// methods are the request methods with a label of their own; any other is "OTHER", so that
// a client cannot grow the series without bound.
var methods = [...]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"}

// classes are the status-class labels; index = status / 100 - 1.
var classes = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// latencyBucketsSeconds cover a fast hello world (under a millisecond) to a slow report.
var latencyBucketsSeconds = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// queueWaitBucketsSeconds start lower: most requests find a free slot at once.
var queueWaitBucketsSeconds = []float64{0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30}

// exitCauses are pre-set to zero so that a dashboard can tell "none" from "not exported".
var exitCauses = []supervisor.ExitCause{
	supervisor.CauseCrash, supervisor.CauseBootError, supervisor.CauseBootTimeout, supervisor.CauseStop,
	supervisor.CauseReload, supervisor.CauseMaxRequests, supervisor.CauseMaxLifetime, supervisor.CauseRSS,
	supervisor.CauseTimeout, supervisor.CauseScaleDown,
}

// Metrics counts what the master does. Its OnDone is the per-request hook and its
// Observer methods hear the supervisor; both only touch atomic counters and one short
// mutex (the live window), so they cost well under a microsecond per request.
type Metrics struct {
	registry *prometheus.Registry
	pool     PoolView
	started  time.Time

	requests  [len(methods)][len(classes)]prometheus.Counter // resolved once: no label lookup per request
	latency   prometheus.Histogram
	queueWait prometheus.Histogram
	bytesIn   prometheus.Counter
	bytesOut  prometheus.Counter
	inFlight  atomic.Int64
	total     atomic.Uint64
	draining  atomic.Bool

	exits         *prometheus.CounterVec
	starts        prometheus.Counter
	bootSeconds   prometheus.Histogram
	reloads       prometheus.Counter
	failedReloads prometheus.Counter

	window window
	// webSockets, when the app may have some (UseWebSockets).
	webSockets *proxy.WebSockets

	mu         sync.Mutex // guards what the supervisor's loop reports below
	generation int
	exitCounts map[supervisor.ExitCause]uint64
	lastReload *ReloadInfo
}

// ReloadInfo is the outcome of the last reload.
type ReloadInfo struct {
	Generation int       `json:"generation"`
	At         time.Time `json:"at"`
	OK         bool      `json:"ok"`
	Error      string    `json:"error,omitempty"`
}

// NewMetrics registers every series on a fresh registry.
func NewMetrics(pool PoolView) *Metrics {
	m := &Metrics{
		registry:   prometheus.NewRegistry(),
		pool:       pool,
		started:    time.Now(),
		generation: 1,
		exitCounts: make(map[supervisor.ExitCause]uint64),
	}
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "herd_http_requests_total", Help: "HTTP requests answered, by method and status class.",
	}, []string{"method", "code"})
	for i, meth := range methods {
		for j, class := range classes {
			m.requests[i][j] = reqs.WithLabelValues(meth, class)
		}
	}
	m.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "herd_http_request_duration_seconds", Help: "Time from a request's arrival to the end of its response.",
		Buckets: latencyBucketsSeconds,
	})
	m.queueWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "herd_queue_wait_seconds", Help: "Time requests waited for a free worker slot.",
		Buckets: queueWaitBucketsSeconds,
	})
	m.bytesIn = prometheus.NewCounter(prometheus.CounterOpts{Name: "herd_http_request_bytes_total", Help: "Request body bytes received."})
	m.bytesOut = prometheus.NewCounter(prometheus.CounterOpts{Name: "herd_http_response_bytes_total", Help: "Response body bytes sent."})
	inFlight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "herd_http_requests_in_flight", Help: "Requests being served or waiting for a worker.",
	}, func() float64 { return float64(m.inFlight.Load()) })
	queue := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "herd_queue_depth", Help: "Requests waiting for a free worker slot.",
	}, func() float64 { return float64(pool.QueueLen()) })
	m.exits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "herd_worker_exits_total",
		Help: "Worker exits by cause; every one but stop and scale_down is followed by a restart.",
	}, []string{"cause"})
	for _, c := range exitCauses {
		m.exits.WithLabelValues(string(c))
	}
	m.starts = prometheus.NewCounter(prometheus.CounterOpts{Name: "herd_worker_starts_total", Help: "Worker processes started."})
	m.bootSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "herd_worker_boot_seconds", Help: "Time from a worker's start to its ready.",
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
	})
	m.reloads = prometheus.NewCounter(prometheus.CounterOpts{Name: "herd_reloads_total", Help: "Reloads that put a new generation in service."})
	m.failedReloads = prometheus.NewCounter(prometheus.CounterOpts{Name: "herd_reloads_failed_total", Help: "Reloads whose new generation did not take over."})
	gen := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herd_generation", Help: "The generation of workers in service."},
		func() float64 { return float64(m.Generation()) })

	m.registry.MustRegister(reqs, m.latency, m.queueWait, m.bytesIn, m.bytesOut, inFlight, queue, m.exits, m.starts,
		m.bootSeconds, m.reloads, m.failedReloads, gen, workerCollector{pool},
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	return m
}

// Registry is where every series lives, for /metrics.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// OnDone counts one answered request: the proxy.Handler.OnDone hook.
func (m *Metrics) OnDone(rec *proxy.Record) {
	m.requests[methodIndex(rec.Request.Method)][classIndex(rec.Status)].Inc()
	m.latency.Observe(rec.Duration.Seconds())
	if rec.Worker >= 0 || rec.QueueWait > 0 {
		m.queueWait.Observe(rec.QueueWait.Seconds())
	}
	if rec.BytesIn > 0 {
		m.bytesIn.Add(float64(rec.BytesIn))
	}
	if rec.BytesOut > 0 {
		m.bytesOut.Add(float64(rec.BytesOut))
	}
	m.total.Add(1)
	m.window.record(rec.Start.Add(rec.Duration), rec.Duration, rec.Status >= 500)
}

// Track counts the requests in flight through h.
func (m *Metrics) Track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.inFlight.Add(1)
		defer m.inFlight.Add(-1)
		h.ServeHTTP(w, r)
	})
}

func methodIndex(method string) int {
	for i, m := range methods[:len(methods)-1] {
		if m == method {
			return i
		}
	}
	return len(methods) - 1
}

func classIndex(status int) int {
	return min(max(status/100-1, 0), len(classes)-1)
}

// SetDraining marks the master as stopping: /readyz answers 503 from now on, so that a
// load balancer stops sending while requests in flight finish.
func (m *Metrics) SetDraining() { m.draining.Store(true) }

// Draining reports whether a stop has begun.
func (m *Metrics) Draining() bool { return m.draining.Load() }

// Generation is the generation in service.
func (m *Metrics) Generation() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.generation
}

// The supervisor.Observer methods.

func (m *Metrics) WorkerStarted(supervisor.WorkerInfo) { m.starts.Inc() }

func (m *Metrics) WorkerReady(_ supervisor.WorkerInfo, boot time.Duration) {
	m.bootSeconds.Observe(boot.Seconds())
}

func (m *Metrics) WorkerExited(_ supervisor.WorkerInfo, _ spawn.ExitStatus, cause supervisor.ExitCause) {
	m.exits.WithLabelValues(string(cause)).Inc()
	m.mu.Lock()
	m.exitCounts[cause]++
	m.mu.Unlock()
}

func (m *Metrics) Reloaded(gen int, err error) {
	info := &ReloadInfo{Generation: gen, At: time.Now(), OK: err == nil}
	if err != nil {
		m.failedReloads.Inc()
		info.Error = err.Error()
	} else {
		m.reloads.Inc()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err == nil {
		m.generation = gen
	}
	m.lastReload = info
}

var _ supervisor.Observer = (*Metrics)(nil)

// workerCollector reads the pool at scrape time: workers by state and each one's RSS.
type workerCollector struct{ pool PoolView }

var (
	workersDesc = prometheus.NewDesc("herd_workers", "Worker processes by state.", []string{"state"}, nil)
	rssDesc     = prometheus.NewDesc("herd_worker_rss_bytes", "Resident memory of each worker, by slot (0..workers-1, taken over by its replacement), from /proc.", []string{"worker"}, nil)
	reqDesc     = prometheus.NewDesc("herd_worker_requests_total", "Requests the worker in each slot (0..workers-1) has taken; it starts again from 0 when a new process takes the slot.", []string{"worker"}, nil)
)

// liveStates are the states a worker in the pool is shown in (dead ones have left it): its
// lifecycle state, with "busy" for a ready one whose slots all carry a request.
var liveStates = []string{"starting", "ready", "busy", "draining", "stopping"}

func (c workerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- workersDesc
	ch <- rssDesc
	ch <- reqDesc
}

// Collect reports each worker under its slot (0..workers-1), not its process: a replaced
// worker's successor continues its series. While a reload runs, two processes hold a slot;
// the newer generation's is shown.
func (c workerCollector) Collect(ch chan<- prometheus.Metric) {
	ws := c.pool.Workers()
	byState := make(map[string]int)
	bySlot := map[int]supervisor.WorkerInfo{}
	for _, w := range ws {
		byState[w.Shown()]++
		if prev, ok := bySlot[w.Slot]; !ok || w.Generation > prev.Generation || w.Generation == prev.Generation && w.ID > prev.ID {
			bySlot[w.Slot] = w
		}
	}
	for slot, w := range bySlot {
		id := strconv.Itoa(slot)
		if rss, err := ProcessRSS(w.Pid); err == nil {
			ch <- prometheus.MustNewConstMetric(rssDesc, prometheus.GaugeValue, float64(rss), id)
		}
		ch <- prometheus.MustNewConstMetric(reqDesc, prometheus.CounterValue, float64(w.Requests), id)
	}
	for _, s := range liveStates {
		ch <- prometheus.MustNewConstMetric(workersDesc, prometheus.GaugeValue, float64(byState[s]), s)
	}
}

// WatchForkServers exports the fork servers (--preload) at scrape time: how many there are
// by state, each one's resident memory, and how many were started and died.
func (m *Metrics) WatchForkServers(status func() spawn.ForkServerStatus) {
	m.registry.MustRegister(forkServerCollector{status})
}

type forkServerCollector struct{ status func() spawn.ForkServerStatus }

var (
	forkServersDesc = prometheus.NewDesc("herd_fork_servers", "Fork server processes (--preload) by state: starting, ready, retiring (it ends with its last worker), stale.", []string{"state"}, nil)
	forkRSSDesc     = prometheus.NewDesc("herd_fork_server_rss_bytes", "Resident memory of each fork server, by the generation it imported (0: development mode's template); its pages are shared with the workers it forked.", []string{"generation"}, nil)
	forkStartsDesc  = prometheus.NewDesc("herd_fork_server_starts_total", "Fork servers started (one per generation, and each replacement).", nil, nil)
	forkDeathsDesc  = prometheus.NewDesc("herd_fork_server_deaths_total", "Fork servers that died unasked; each was replaced, and the workers they forked served on.", nil, nil)
)

func (c forkServerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- forkServersDesc
	ch <- forkRSSDesc
	ch <- forkStartsDesc
	ch <- forkDeathsDesc
}

func (c forkServerCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.status()
	byState := map[string]int{"starting": 0, "ready": 0, "retiring": 0, "stale": 0}
	rssByGen := map[int]int64{}
	for _, srv := range st.Servers {
		byState[srv.State]++
		if rss, err := ProcessRSS(srv.Pid); srv.Pid > 0 && err == nil {
			rssByGen[srv.Generation] += rss
		}
	}
	for state, n := range byState {
		ch <- prometheus.MustNewConstMetric(forkServersDesc, prometheus.GaugeValue, float64(n), state)
	}
	for gen, rss := range rssByGen {
		ch <- prometheus.MustNewConstMetric(forkRSSDesc, prometheus.GaugeValue, float64(rss), strconv.Itoa(gen))
	}
	ch <- prometheus.MustNewConstMetric(forkStartsDesc, prometheus.CounterValue, float64(st.Starts))
	ch <- prometheus.MustNewConstMetric(forkDeathsDesc, prometheus.CounterValue, float64(st.Deaths))
}
