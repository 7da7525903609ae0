package server

import (
	"runtime"
	"testing"
)

func TestSetMasterProcs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	base := runtime.GOMAXPROCS(0)
	if got := setMasterProcs(0, false); got != max(1, base/2) || runtime.GOMAXPROCS(0) != got {
		t.Errorf("auto: %d (runtime %d), want half of %d", got, runtime.GOMAXPROCS(0), base)
	}
	runtime.GOMAXPROCS(base)
	if got := setMasterProcs(0, true); got != base || runtime.GOMAXPROCS(0) != base {
		t.Errorf("with GOMAXPROCS in the environment: %d, want it kept at %d", got, base)
	}
	if got := setMasterProcs(3, true); got != 3 || runtime.GOMAXPROCS(0) != 3 {
		t.Errorf("--master-procs 3: %d (runtime %d)", got, runtime.GOMAXPROCS(0))
	}
}
