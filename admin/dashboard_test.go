package admin_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// rowsJS lists the pids in the dashboard's worker table.
const rowsJS = `[...document.querySelectorAll("#workers tbody tr")].map(r => Number(r.dataset.pid)).sort((a, b) => a - b)`

// TestDashboardShowsWorkersAndFollowsAKill loads the dashboard in a real headless
// Chromium: the table shows one row per worker with the pids herd reports, and after a
// worker is killed the table drops its row and shows its replacement, without a reload of
// the page (server-sent events). A screenshot is left in the artifacts directory.
func TestDashboardShowsWorkersAndFollowsAKill(t *testing.T) {
	start := time.Now()
	h := startAdmin(t, 3)
	browser := herdtest.StartBrowser(t)
	t.Logf("herd and chromium up after %s", time.Since(start))
	for range 30 {
		do(t, "GET", h.URL+"/", "", 200)
	}
	page := browser.Open(h.AdminURL+"/", 1280, 860)
	page.WaitFor(30*time.Second, "three worker rows", `document.querySelectorAll("#workers tbody tr").length === 3`)

	pids := workerPids(t, h.AdminURL)
	slices.Sort(pids)
	var shown []int
	if err := page.Eval(rowsJS, &shown); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(shown, pids) {
		t.Fatalf("dashboard shows pids %v, herd has %v", shown, pids)
	}
	var header struct {
		Workers, Ready, Total string
	}
	if err := page.Eval(`({Workers: document.getElementById("nworkers").textContent, Ready: document.getElementById("ready").textContent, Total: document.getElementById("total").textContent})`, &header); err != nil {
		t.Fatal(err)
	}
	if header.Workers != "3" || header.Ready != "ready" || header.Total != "30" {
		t.Fatalf("dashboard header: %+v, want 3 workers, ready, 30 requests", header)
	}

	t.Logf("table right after %s", time.Since(start))
	killed := pids[0]
	if err := syscall.Kill(killed, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	page.WaitFor(30*time.Second, fmt.Sprintf("pid %d replaced by a ready worker", killed), fmt.Sprintf(
		`(() => { const rows = [...document.querySelectorAll("#workers tbody tr")];
		          return rows.length === 3 && !rows.some(r => r.dataset.pid === "%d") && rows.every(r => r.dataset.state === "ready")
		            && document.getElementById("restarts").textContent === "1"; })()`, killed))
	t.Logf("kill followed after %s", time.Since(start))
	after := workerPids(t, h.AdminURL)
	slices.Sort(after)
	if err := page.Eval(rowsJS, &shown); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(shown, after) || slices.Contains(after, killed) {
		t.Fatalf("after the kill the dashboard shows %v, herd has %v (killed %d)", shown, after, killed)
	}

	// Some traffic for the charts, then a picture for people.
	for range 40 {
		do(t, "GET", h.URL+"/sleep?s=0.01", "", 200)
	}
	page.WaitFor(10*time.Second, "the traffic counted and charted",
		`Number(document.getElementById("total").textContent) >= 70 && document.getElementById("rps").textContent !== "0.0"`)
	shot := filepath.Join(herdtest.ArtifactDir(t), "dashboard.png")
	page.Screenshot(shot)
	t.Logf("dashboard screenshot: %s", shot)
}

// TestDashboardShowsForkServer: under --preload the dashboard shows the fork server (its
// pid as /stats has it) and marks every worker forked; after the fork server is killed it
// shows its replacement and the death counted.
func TestDashboardShowsForkServer(t *testing.T) {
	h := startAdmin(t, 2, "--preload")
	browser := herdtest.StartBrowser(t)
	page := browser.Open(h.AdminURL+"/", 1280, 860)
	st := stats(t, h.AdminURL)
	if st.ForkServers == nil || len(st.ForkServers.Servers) != 1 {
		t.Fatalf("fork servers: %+v", st.ForkServers)
	}
	first := st.ForkServers.Servers[0].Pid
	page.WaitFor(30*time.Second, "the fork server's row and two forked workers", fmt.Sprintf(
		`(() => { const rows = [...document.querySelectorAll("#forkservers tbody tr")];
		          const forked = [...document.querySelectorAll("#workers tbody tr")].filter(r => r.cells[4].textContent === "yes");
		          return !document.getElementById("forkservers").hidden && rows.length === 1 && rows[0].dataset.pid === "%d"
		            && rows[0].dataset.state === "ready" && forked.length === 2; })()`, first))
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	page.WaitFor(30*time.Second, "the replacement fork server and the death counted",
		fmt.Sprintf(`(() => { const rows = [...document.querySelectorAll("#forkservers tbody tr")];
		          return rows.length === 1 && rows[0].dataset.pid !== "%d" && rows[0].dataset.state === "ready"
		            && document.getElementById("preload").textContent.includes("1 death(s)"); })()`, first))
	shot := filepath.Join(herdtest.ArtifactDir(t), "dashboard-preload.png")
	page.Screenshot(shot)
	t.Logf("dashboard screenshot: %s", shot)
}
