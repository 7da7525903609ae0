package admin

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/herd-server/herd/proxy"
	"github.com/herd-server/herd/supervisor"
)

// BenchmarkOnDone is the metrics hook's cost per request (every counter, both histograms
// and the live window). Reproduce: go test ./admin -run '^$' -bench OnDone -benchmem
func BenchmarkOnDone(b *testing.B) {
	m := NewMetrics(supervisor.NewPool(1, time.Second))
	rec := &proxy.Record{
		Request: httptest.NewRequest("GET", "/", nil), Start: time.Now(), Duration: 800 * time.Microsecond,
		QueueWait: 20 * time.Microsecond, Status: 200, BytesIn: 0, BytesOut: 17, Worker: 1,
	}
	b.ReportAllocs()
	for b.Loop() {
		m.OnDone(rec)
	}
}

// BenchmarkOnDoneParallel: the same from every core at once, as under load.
func BenchmarkOnDoneParallel(b *testing.B) {
	m := NewMetrics(supervisor.NewPool(1, time.Second))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		rec := &proxy.Record{
			Request: httptest.NewRequest("POST", "/echo", nil), Start: time.Now(), Duration: 3 * time.Millisecond,
			Status: 200, BytesIn: 100, BytesOut: 100, Worker: 2,
		}
		for pb.Next() {
			m.OnDone(rec)
		}
	})
}
