package admin

import (
	"strings"
	"testing"
)

func TestTopScreenFitsTheTerminal(t *testing.T) {
	st := Stats{Version: "dev", Pid: 7, Ready: true, Generation: 2, Workers: []WorkerStats{
		{ID: 1, Pid: 100, Generation: 2, State: "busy", Requests: 5, InFlight: 1, RSS: 16 << 20, UptimeS: 3700,
			Current: []CurrentRequest{{Method: "GET", URI: "/report?year=2026", AgeMs: 1500}}},
		{ID: 2, Pid: 101, Generation: 2, State: "ready", RSS: 15 << 20, UptimeS: 59},
	}}
	full := TopScreen(st, 0, 0)
	text := strings.Join(full, "\n")
	for _, want := range []string{"generation 2", "workers 2 (2 taking requests)", "GET /report?year=2026 (1.50 s)", "1h01m", "59s", "16.0M", "q quits"} {
		if !strings.Contains(text, want) {
			t.Errorf("screen lacks %q:\n%s", want, text)
		}
	}
	small := TopScreen(st, 40, 5)
	if len(small) != 5 || small[4] != "q quits" {
		t.Fatalf("5-row terminal got %d lines: %q", len(small), small)
	}
	for _, l := range small {
		if len(l) > 40 {
			t.Errorf("line longer than the terminal: %q", l)
		}
	}
}
