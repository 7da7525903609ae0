package accesslog

import (
	"strings"
	"testing"
)

// TestGunicornFormat: gunicorn's default access_log_format and its other atoms give the line
// gunicorn writes for the same request.
func TestGunicornFormat(t *testing.T) {
	rec := record()
	rec.Request.SetBasicAuth("alice", "pw")
	got := line(t, `%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"`, rec)
	want := `192.0.2.9 - alice [25/Nov/2026:12:30:05 +0100] "GET /shop/item?id=7 HTTP/1.1" 200 17 "http://example.com/" "curl/8 \x22quoted\x22"` + "\n"
	if got != want {
		t.Fatalf("\n got %s\nwant %s", got, want)
	}
	got = line(t, `%(m)s %(U)s %(q)s %(H)s %(B)s %(T)s %(D)s %(L)s %(M)s %(p)s %({user-agent}i)s %({HTTP_REFERER}e)s`, rec)
	want = `GET /shop/item id=7 HTTP/1.1 17 0 1500 0.001500 1 <3> curl/8 \x22quoted\x22 http://example.com/` + "\n"
	if got != want {
		t.Fatalf("\n got %s\nwant %s", got, want)
	}
	for _, bad := range []string{`%(Z)s`, `%({x-id}o)s`, `%(h`} {
		if _, err := Parse(bad); err == nil || !strings.Contains(err.Error(), "access-log-format") {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

// TestTrustedClient: the remote host is the client a trusted proxy named, as the app saw it.
func TestTrustedClient(t *testing.T) {
	rec := record()
	rec.Client = "203.0.113.50"
	if got := line(t, "{remote_host}", rec); got != "203.0.113.50\n" {
		t.Fatal(got)
	}
	rec.Client, rec.Request.RemoteAddr = "", "@"
	if got := line(t, "%(h)s", rec); got != "-\n" {
		t.Fatal(got)
	}
}
