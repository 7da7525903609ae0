package accesslog

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/herd-server/herd/proxy"
)

func record() *proxy.Record {
	r := httptest.NewRequest("GET", "/shop/item?id=7", nil)
	r.RemoteAddr = "192.0.2.9:51234"
	r.Header.Set("Referer", "http://example.com/")
	r.Header.Set("User-Agent", `curl/8 "quoted"`)
	return &proxy.Record{
		Request: r, Start: time.Date(2026, 11, 25, 12, 30, 5, 0, time.FixedZone("", 3600)),
		Duration: 1500 * time.Microsecond, QueueWait: 250 * time.Microsecond, Status: 200, BytesIn: 0, BytesOut: 17, Worker: 3,
	}
}

func line(t *testing.T, spec string, rec *proxy.Record) string {
	t.Helper()
	f, err := Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	return string(f.Append(nil, rec))
}

func TestCombined(t *testing.T) {
	got := line(t, "combined", record())
	want := `192.0.2.9 - - [25/Nov/2026:12:30:05 +0100] "GET /shop/item?id=7 HTTP/1.1" 200 17 "http://example.com/" "curl/8 \x22quoted\x22"` + "\n"
	if got != want {
		t.Fatalf("combined:\n got %s\nwant %s", got, want)
	}
	rec := record()
	rec.BytesOut = 0
	rec.Request.Header.Del("Referer")
	if got := line(t, "combined", rec); !strings.Contains(got, `200 - "-" "curl`) {
		t.Fatalf("empty body and missing referer not '-': %s", got)
	}
}

func TestTemplate(t *testing.T) {
	got := line(t, "{method} {path} q={query} {status} {duration_ms}ms worker={worker} queue={queue_ms} {header:X-Id}", record())
	if want := "GET /shop/item q=id=7 200 1.500ms worker=3 queue=0.250 -\n"; got != want {
		t.Fatalf("template:\n got %q\nwant %q", got, want)
	}
	for _, bad := range []string{"{nope}", "{method", "{header:}"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

// TestLineCannotBeForged: a request line with CR/LF or quotes stays one line.
func TestLineCannotBeForged(t *testing.T) {
	rec := record()
	rec.Request.Header.Set("User-Agent", "x\"\n127.0.0.1 - - fake\xff")
	for _, spec := range []string{"combined", "json"} {
		got := line(t, spec, rec)
		if strings.Count(got, "\n") != 1 || !strings.HasSuffix(got, "\n") {
			t.Errorf("%s: %q is not one line", spec, got)
		}
	}
}

func TestJSON(t *testing.T) {
	got := line(t, "json", record())
	var v map[string]any
	if err := json.Unmarshal([]byte(got), &v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, got)
	}
	want := map[string]any{"time": "2026-11-25T11:30:05.000Z", "remote": "192.0.2.9:51234", "method": "GET", "uri": "/shop/item?id=7", "path": "/shop/item",
		"proto": "HTTP/1.1", "status": 200.0, "bytes_in": 0.0, "bytes_out": 17.0, "duration_ms": 1.5, "queue_ms": 0.25, "worker": 3.0,
		"referer": "http://example.com/", "user_agent": `curl/8 "quoted"`, "host": "example.com"}
	for k, w := range want {
		if v[k] != w {
			t.Errorf("%s = %v, want %v", k, v[k], w)
		}
	}
}

func BenchmarkCombined(b *testing.B) {
	f, _ := Parse("combined")
	rec := record()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = f.Append(buf[:0], rec)
	}
}
