package admin_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herd-server/herd/admin"
	"github.com/herd-server/herd/internal/herdtest"
)

// TestAdminRefusesUnknownHosts: a page that rebinds its own name to 127.0.0.1 makes the
// operator's browser send Host: attacker.example; the admin server refuses that with 421,
// while IP addresses, localhost and --admin-hosts names are served.
func TestAdminRefusesUnknownHosts(t *testing.T) {
	h := startAdmin(t, 1, "--admin-hosts", "metrics.internal")
	for _, tc := range []struct {
		host string
		want int
	}{
		{"attacker.example", http.StatusMisdirectedRequest},
		{"attacker.example:9180", http.StatusMisdirectedRequest},
		{"127.0.0.1.nip.io", http.StatusMisdirectedRequest},
		{"localhost.attacker.example", http.StatusMisdirectedRequest},
		{"127.0.0.1", http.StatusOK},
		{"[::1]:9180", http.StatusOK},
		{"localhost:9180", http.StatusOK},
		{"LOCALHOST.", http.StatusOK},
		{"metrics.internal", http.StatusOK},
		{"10.1.2.3:9180", http.StatusOK},
	} {
		for _, path := range []string{"/stats", "/metrics", "/"} {
			req, err := http.NewRequest("GET", h.AdminURL+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = tc.host
			resp, err := herdtest.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("Host %q %s: %d, want %d", tc.host, path, resp.StatusCode, tc.want)
			}
		}
	}
}

// TestStatsRedactsQueryStrings: a request in flight with a token in its query shows on
// /stats without it (?...), unless --admin-show-query; herd status, the operator's own
// socket, shows it whole.
func TestStatsRedactsQueryStrings(t *testing.T) {
	for _, show := range []bool{false, true} {
		var extra []string
		if show {
			extra = []string{"--admin-show-query"}
		}
		h := startAdmin(t, 1, extra...)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = herdtest.Get(t, herdtest.Client(), h.URL+"/sleep?s=3&token=SECRET")
		}()
		var uri string
		herdtest.Eventually(t, 10*time.Second, "the slow request on /stats", func() bool {
			_, body := get(t, h.AdminURL+"/stats")
			var st admin.Stats
			if err := json.Unmarshal([]byte(body), &st); err != nil {
				t.Fatalf("/stats: %v", err)
			}
			for _, w := range st.Workers {
				for _, c := range w.Current {
					if strings.HasPrefix(c.URI, "/sleep") {
						uri = c.URI
						return true
					}
				}
			}
			return false
		})
		want := "/sleep?..."
		if show {
			want = "/sleep?s=3&token=SECRET"
		}
		if uri != want {
			t.Errorf("--admin-show-query=%v: /stats shows %q, want %q", show, uri, want)
		}
		<-done
	}
}
