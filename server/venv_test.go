package server

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
)

// pinnedVersions reads the exact versions requirements/peers.txt pins, by lower-case name.
func pinnedVersions(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(herdtest.RepoRoot(t), "requirements", "peers.txt"))
	if err != nil {
		t.Fatal(err)
	}
	pins := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^([A-Za-z0-9._-]+)==(\S+)`).FindAllStringSubmatch(string(b), -1) {
		pins[strings.ToLower(m[1])] = m[2]
	}
	return pins
}

// venvAnswer is what scripts/testapps/venvapp.py says about the Python that serves it.
type venvAnswer struct {
	Executable string `json:"executable"`
	Prefix     string `json:"prefix"`
	BasePrefix string `json:"base_prefix"`
	Python     string `json:"python"`
	Flask      string `json:"flask"`
	FlaskFile  string `json:"flask_file"`
	Django     string `json:"django"`
	DjangoFile string `json:"django_file"`
}

// TestVenvServesWithTheVenvsPackages starts herd with --venv on the real venv of today's
// peers (make venv), given as the flag and as HERD_VENV, and asks the app over HTTP what it
// runs with: the venv's interpreter (sys.prefix is the venv), and the Flask and Django
// requirements/peers.txt pins, imported from the venv's site-packages. Neither the pyenv
// python3 on PATH (herd's default) nor Debian's has those versions.
func TestVenvServesWithTheVenvsPackages(t *testing.T) {
	venv := herdtest.VenvDir(t)
	realVenv, err := filepath.EvalSymlinks(venv)
	if err != nil {
		t.Fatal(err)
	}
	pins := pinnedVersions(t)
	if !strings.HasPrefix(pins["flask"], "3.1.") || !strings.HasPrefix(pins["django"], "6.1.") {
		t.Fatalf("requirements/peers.txt pins Flask %q and Django %q; this test expects 3.1 and 6.1", pins["flask"], pins["django"])
	}
	under := func(path, dir string) bool {
		real, err := filepath.EvalSymlinks(path)
		return err == nil && strings.HasPrefix(real, dir+string(filepath.Separator))
	}
	for _, tc := range []struct {
		name string
		args []string
		env  []string
	}{
		{"flag", []string{"--venv", venv}, nil},
		{"environment", nil, []string{"HERD_VENV=" + venv}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := herdtest.Start(t, herdtest.Options{Dir: testAppsDir(t), Env: tc.env,
				Args: append([]string{"venvapp:app", "--workers", "1"}, tc.args...)})
			h.WaitReady(1, 60*time.Second)
			ev, _, ok := h.WaitEvent(0, 10*time.Second, herdtest.IsMsg("herd is starting"))
			if !ok {
				t.Fatal("no start-up log line")
			}
			if got, want := ev.Str("python"), filepath.Join(venv, "bin", "python"); got != want {
				t.Errorf("herd's start-up line names python %q, want the venv's %q", got, want)
			}

			status, body := herdtest.Get(t, herdtest.Client(), h.URL+"/versions")
			if status != 200 {
				t.Fatalf("GET /versions: %d %.300s", status, body)
			}
			var got venvAnswer
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("GET /versions: %v: %.300s", err, body)
			}
			if prefix, err := filepath.EvalSymlinks(got.Prefix); err != nil || prefix != realVenv {
				t.Errorf("the app's sys.prefix is %q, want the venv %q", got.Prefix, realVenv)
			}
			if got.BasePrefix == got.Prefix {
				t.Errorf("sys.base_prefix = sys.prefix = %q: the worker's Python is not in a venv", got.Prefix)
			}
			// Lexically: bin/python is a link to the interpreter the venv was made from.
			if want := filepath.Join(venv, "bin", "python"); filepath.Clean(got.Executable) != want {
				t.Errorf("the worker's sys.executable is %q, want the venv's %q", got.Executable, want)
			}
			if got.Flask != pins["flask"] || got.Django != pins["django"] {
				t.Errorf("the app imported Flask %s and Django %s, want the pinned %s and %s",
					got.Flask, got.Django, pins["flask"], pins["django"])
			}
			if !under(got.FlaskFile, realVenv) || !under(got.DjangoFile, realVenv) {
				t.Errorf("Flask (%s) and Django (%s) were not imported from the venv %s", got.FlaskFile, got.DjangoFile, realVenv)
			}
			t.Logf("served by Python %s from %s: Flask %s, Django %s", got.Python, got.Executable, got.Flask, got.Django)
		})
	}

	// herd check imports the app as serve would, with the same interpreter.
	t.Run("check", func(t *testing.T) {
		r := herdtest.Run(t, testAppsDir(t), nil, "check", "venvapp:app", "--venv", venv)
		want := "ok: venvapp:app imported by " + filepath.Join(venv, "bin", "python")
		if r.Code != 0 || !strings.Contains(r.Stdout, want) {
			t.Errorf("herd check --venv: exit %d, want %q in:\n%s\n%s", r.Code, want, r.Stdout, r.Stderr)
		}
	})
}
