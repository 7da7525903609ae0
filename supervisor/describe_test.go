package supervisor

import (
	"testing"
	"time"
)

// BenchmarkLeaseDescribe is what showing a slot's current request costs a request: the
// proxy's Describe and the clearing in Release (no pool lock is taken).
// Reproduce: go test ./supervisor -run '^$' -bench LeaseDescribe -benchmem
func BenchmarkLeaseDescribe(b *testing.B) {
	l := &Lease{slot: &slot{}}
	since := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		l.Describe("GET", "/shop/item?id=7", since)
		l.slot.current.Store(nil)
	}
}
