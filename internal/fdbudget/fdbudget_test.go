package fdbudget

import (
	"sync"
	"syscall"
	"testing"
)

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		nofile        uint64
		want, reserve int
		conns, files  int
		name          string
	}{
		{600, 10000, 164, 218, 218, "the issue's ulimit -n 600: halves past the reserve"},
		{1 << 20, 10000, 300, 10000, (1 << 20) - 300 - 10000, "a wanted limit under half: files get the rest"},
		{100, 10000, 200, 1, 1, "a reserve past the limit: one of each still"},
	} {
		s := split(tc.nofile, tc.want, tc.reserve)
		if s.Conns != tc.conns || s.Files != tc.files {
			t.Errorf("%s: %+v, want conns %d files %d", tc.name, s, tc.conns, tc.files)
		}
		if tc.reserve < int(tc.nofile) && uint64(s.Reserve+s.Conns+s.Files) > tc.nofile {
			t.Errorf("%s: %+v adds up past the limit", tc.name, s)
		}
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if s, err := Plan(10, 64); err != nil || s.Conns != min(10, int(rl.Cur-64)/2) || s.NoFile != rl.Cur {
		t.Errorf("Plan(10, 64) = %+v, %v", s, err)
	}
}

// Take never lets more than the bound through, however many take at once.
func TestFilesBound(t *testing.T) {
	f := NewFiles(10)
	var wg sync.WaitGroup
	var mu sync.Mutex
	peak, held := 0, 0
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				if !f.Take(2) {
					continue
				}
				mu.Lock()
				held += 2
				peak = max(peak, held)
				mu.Unlock()
				mu.Lock()
				held -= 2
				mu.Unlock()
				f.Give(2)
			}
		}()
	}
	wg.Wait()
	if peak > 10 || f.InUse() != 0 {
		t.Fatalf("peak %d of 10, %d left in use", peak, f.InUse())
	}
	var none *Files
	if !none.Take(1<<20) || none.Max() != 0 {
		t.Fatal("a nil Files bounds nothing")
	}
}
