package static

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
	"golang.org/x/sys/unix"
)

// settle shortens the window in which a changed file is not kept, and waits until the files
// at paths are out of it: the tests then know which of their files are settled. 30 ms is
// above the kernel's clock tick, which the window is there for.
func settle(t *testing.T, paths ...string) {
	t.Helper()
	old := racyWindow
	racyWindow = 30 * time.Millisecond
	t.Cleanup(func() { racyWindow = old })
	waitSettled(t, paths...)
}

// waitSettled waits until the change time of each file at paths is racyWindow old, as the
// cache sees it (following links): from then on a request keeps the file.
func waitSettled(t *testing.T, paths ...string) {
	t.Helper()
	herdtest.EventuallyNil(t, 10*time.Second, fmt.Sprintf("%q settled", paths), func() error {
		for _, p := range paths {
			var st unix.Stat_t
			if err := unix.Stat(p, &st); err != nil {
				return err
			}
			if age := time.Since(time.Unix(st.Ctim.Unix())); age < racyWindow {
				return fmt.Errorf("%s changed %s ago", filepath.Base(p), age)
			}
		}
		return nil
	})
}

// withinWindow runs check with a window of an hour: a file written just before is within it
// however slow the machine is, which 30 ms does not promise on a loaded one.
func withinWindow(check func()) {
	old := racyWindow
	racyWindow = time.Hour
	defer func() { racyWindow = old }()
	check()
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func serve(h http.Handler, method, path string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, path, nil))
	return w
}

// TestKeptFileFollowsChanges: a file kept in memory is never served after it changed on
// disk, however it changed, and a file is kept only once it has settled.
func TestKeptFileFollowsChanges(t *testing.T) {
	for _, follow := range []bool{false, true} {
		t.Run(map[bool]string{false: "root", true: "follow symlinks"}[follow], func(t *testing.T) {
			base := t.TempDir()
			dir := filepath.Join(base, "pub")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(base, "secret.txt"), "the secret")
			file := filepath.Join(dir, "a.txt")
			writeFile(t, file, "one")
			settle(t, file)
			h, err := New([]Dir{{Prefix: "/s", Path: dir}}, Options{CacheBytes: 1 << 20, FollowSymlinks: follow}, http.NotFoundHandler())
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			expect := func(step, body string, keptFiles int) {
				t.Helper()
				w := serve(h, "GET", "/s/a.txt")
				if w.Code != 200 || w.Body.String() != body {
					t.Errorf("%s: %d %q, want %q", step, w.Code, w.Body.String(), body)
				}
				if files, _ := h.Kept(); files != keptFiles {
					t.Errorf("%s: %d files kept, want %d", step, files, keptFiles)
				}
			}
			expect("first", "one", 1)
			expect("kept", "one", 1)

			// Rewritten in place with the same size: the change time moves.
			writeFile(t, file, "two")
			withinWindow(func() { expect("rewritten in place", "two", 0) }) // changed just now: not kept yet
			waitSettled(t, file)
			expect("settled again", "two", 1)

			// Replaced by a rename, as deploy tools and collectstatic do.
			writeFile(t, file+".new", "three")
			if err := os.Rename(file+".new", file); err != nil {
				t.Fatal(err)
			}
			withinWindow(func() { expect("renamed over", "three", 0) })
			waitSettled(t, file)
			expect("settled", "three", 1)

			// Grown past what is kept: served whole from disk.
			big := strings.Repeat("x", cacheFileMax+1)
			writeFile(t, file, big)
			waitSettled(t, file)
			expect("grown", big, 0)

			// Deleted: the app answers.
			writeFile(t, file, "four")
			waitSettled(t, file)
			expect("before removal", "four", 1)
			if err := os.Remove(file); err != nil {
				t.Fatal(err)
			}
			if w := serve(h, "GET", "/s/a.txt"); w.Code != 404 || w.Body.String() != "404 page not found\n" {
				t.Errorf("removed: %d %q, want the next handler's 404", w.Code, w.Body.String())
			}
			if files, _ := h.Kept(); files != 0 {
				t.Errorf("removed: %d files still kept", files)
			}

			// Replaced by a symlink out of the directory: refused as the open path refuses
			// it (unless symlinks are followed).
			writeFile(t, file, "five")
			waitSettled(t, file)
			expect("before the link", "five", 1)
			if err := os.Remove(file); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("../secret.txt", file); err != nil {
				t.Fatal(err)
			}
			w := serve(h, "GET", "/s/a.txt")
			switch {
			case follow && (w.Code != 200 || w.Body.String() != "the secret"):
				t.Errorf("link followed: %d %q", w.Code, w.Body.String())
			case !follow && (w.Code != 404 || strings.Contains(w.Body.String(), "secret")):
				t.Errorf("escaping link: %d %q, want 404", w.Code, w.Body.String())
			}
		})
	}
}

// TestKeptAnswers: the answers from memory are ServeContent's, for plain and conditional
// requests alike.
func TestKeptAnswers(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.css"), "body{}")
	writeFile(t, filepath.Join(dir, "page"), "<html><body>x</body></html>")
	settle(t, filepath.Join(dir, "a.css"), filepath.Join(dir, "page"))
	kept, err := New([]Dir{{Prefix: "/s", Path: dir}}, Options{CacheBytes: 1 << 20}, http.NotFoundHandler())
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	disk, err := New([]Dir{{Prefix: "/s", Path: dir}}, Options{}, http.NotFoundHandler())
	if err != nil {
		t.Fatal(err)
	}
	defer disk.Close()
	for _, path := range []string{"/s/a.css", "/s/page"} {
		serve(kept, "GET", path) // keeps it
		tag := serve(disk, "GET", path).Header().Get("ETag")
		for _, hdr := range [][2]string{{}, {"If-None-Match", tag}, {"Range", "bytes=1-2"}, {"If-Match", `"x"`}} {
			for _, method := range []string{"GET", "HEAD"} {
				get := func(h http.Handler) *httptest.ResponseRecorder {
					r := httptest.NewRequest(method, path, nil)
					if hdr[0] != "" {
						r.Header.Set(hdr[0], hdr[1])
					}
					w := httptest.NewRecorder()
					h.ServeHTTP(w, r)
					return w
				}
				want, got := get(disk), get(kept)
				if got.Code != want.Code || !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
					t.Errorf("%s %s %q: %d %q, from disk %d %q", method, path, hdr, got.Code, got.Body, want.Code, want.Body)
				}
				for _, k := range []string{"Content-Type", "Content-Length", "Etag", "Last-Modified", "Accept-Ranges", "Content-Range"} {
					if got.Header().Get(k) != want.Header().Get(k) {
						t.Errorf("%s %s %q: %s %q, from disk %q", method, path, hdr, k, got.Header().Get(k), want.Header().Get(k))
					}
				}
			}
		}
	}
	if files, _ := kept.Kept(); files != 2 {
		t.Errorf("%d files kept, want 2", files)
	}
}

// TestCacheBounds: the budget bounds what is kept, not what is served; a file changed within
// the window is served and not kept.
func TestCacheBounds(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"a", "b", "c"} {
		writeFile(t, filepath.Join(dir, name), strings.Repeat(name, 1024))
	}
	settle(t, filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c"))
	h, err := New([]Dir{{Prefix: "/s", Path: dir}}, Options{CacheBytes: 2048}, http.NotFoundHandler())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for range 2 {
		for _, name := range []string{"a", "b", "c"} {
			if w := serve(h, "GET", "/s/"+name); w.Code != 200 || w.Body.String() != strings.Repeat(name, 1024) {
				t.Errorf("%s: %d, %d bytes", name, w.Code, w.Body.Len())
			}
		}
	}
	if files, n := h.Kept(); files != 2 || n != 2048 {
		t.Errorf("kept %d files, %d bytes; want 2 in a budget of 2048", files, n)
	}

	racyWindow = time.Hour
	writeFile(t, filepath.Join(dir, "a"), "fresh")
	if w := serve(h, "GET", "/s/a"); w.Body.String() != "fresh" {
		t.Errorf("fresh file: %q", w.Body.String())
	}
	if files, n := h.Kept(); files != 1 || n != 1024 {
		t.Errorf("a file changed within the window was kept: %d files, %d bytes", files, n)
	}
}
