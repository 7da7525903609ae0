package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/herd-server/herd/internal/herdtest"
	"github.com/herd-server/herd/supervisor/spawn"
)

// TestHelpHasExamples: every command's --help shows examples.
func TestHelpHasExamples(t *testing.T) {
	root := newRootCmd()
	for _, c := range root.Commands() {
		if !c.IsAvailableCommand() || c.Name() == "help" {
			continue
		}
		if strings.TrimSpace(c.Example) == "" {
			t.Errorf("herd %s --help has no examples", c.Name())
		}
	}
	r := herdtest.Run(t, "", nil, "serve", "--help")
	if r.Code != 0 || !strings.Contains(r.Stdout, "Examples:\n  herd serve hello:app") {
		t.Fatalf("herd serve --help: exit %d\n%s", r.Code, r.Stdout)
	}
}

// TestBashCompletion: `herd completion bash` prints a script that, loaded in a real bash with
// bash-completion, completes commands and the values of a choice option.
func TestBashCompletion(t *testing.T) {
	bashCompletion := "/usr/share/bash-completion/bash_completion"
	if _, err := os.Stat(bashCompletion); err != nil {
		herdtest.RequireTool(t, "bash-completion-missing", "bash-completion")
	}
	r := herdtest.Run(t, "", nil, "completion", "bash")
	if r.Code != 0 || !strings.HasPrefix(r.Stdout, "# bash completion V2 for herd") {
		t.Fatalf("herd completion bash: exit %d\n%.200s", r.Code, r.Stdout)
	}
	script := filepath.Join(t.TempDir(), "herd.bash")
	if err := os.WriteFile(script, []byte(r.Stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	// complete "WORDS..." prints what <TAB> offers after them, one per line.
	driver := `source ` + bashCompletion + `
source "$SCRIPT"
complete_words() {
	COMP_WORDS=("$HERD" "$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
	COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}
	COMPREPLY=(); __start_herd 2>/dev/null
	printf '%s\n' "${COMPREPLY[@]}"; echo --
}
complete_words sta
complete_words serve --log-level ""
complete_words serve --reload-engine p
`
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", driver)
	cmd.Env = append(os.Environ(), "HERD="+herdtest.Binary(t), "SCRIPT="+script)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	want := "status\n--\ndebug\ninfo\nwarn\nerror\n--\npoll\n--\n"
	if string(out) != want {
		t.Fatalf("completions:\n%s\nwant:\n%s", out, want)
	}
}

// TestBadInputShownExactly: what a user sees (stderr and exit status of herd serve) for
// each class of bad input, word for word.
func TestBadInputShownExactly(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"typo.yaml": "wrokers: 2\n",
		"typo.ini":  "[uwsgi]\nprocesess = 2\n",
		"typo.py":   "worker = 4\n",
		"bad.toml":  "threads = \"lots\"\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "dir.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	python, err := spawn.ResolvePython("python3")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"bad type, flag", []string{"app:app", "--workers", "many"}, nil,
			`workers (from flag --workers): "many" is not an integer; workers accepts an integer`},
		{"bad type, environment", []string{"app:app"}, []string{"HERD_KEEP_ALIVE=soon"},
			`keep-alive (from environment HERD_KEEP_ALIVE): "soon" is not a duration; keep-alive accepts a duration such as 500ms, 30s or 2m`},
		{"bad type, file", []string{"app:app", "--config", "bad.toml"}, nil,
			`threads (from config file bad.toml): "lots" is not an integer; threads accepts an integer`},
		{"bad choice", []string{"app:app", "--log-level", "loud"}, nil,
			`log-level (from flag --log-level): "loud" is not allowed; log-level accepts one of debug, info, warn, error`},
		{"out of range", []string{"app:app", "--threads", "0", "--workers", "-1"}, nil,
			"invalid configuration:\n  threads: 0: must be 1 or more\n  workers: -1: must be 0 (one per CPU core) or more"},
		{"unknown key with suggestion, yaml", []string{"app:app", "--config", "typo.yaml"}, nil,
			`config file typo.yaml: unknown key "wrokers" (did you mean "workers"?)`},
		{"unknown key with suggestion, ini", []string{"app:app", "--ini", "typo.ini"}, nil,
			`uWSGI file typo.ini: line 2: unknown option "procesess" (did you mean "processes"?)`},
		{"unknown key with suggestion, gunicorn", []string{"app:app", "-c", "typo.py"}, []string{"HERD_PYTHON=" + python},
			`gunicorn file typo.py: "worker" is no gunicorn setting (did you mean "workers"?)`},
		{"unknown flag", []string{"app:app", "--wokers", "2"}, nil, "unknown flag: --wokers (did you mean --workers?)"},
		{"missing app", nil, nil,
			"invalid configuration:\n  app: missing: give the WSGI app as module:callable, e.g. herd serve hello:app"},
		{"unreadable file", []string{"app:app", "--config", "dir.yaml"}, nil,
			"read config file dir.yaml: read dir.yaml: is a directory"},
		{"missing file", []string{"app:app", "--config", "nope.toml"}, nil,
			"config: stat nope.toml: no such file or directory"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := herdtest.Run(t, dir, c.env, append([]string{"serve"}, c.args...)...)
			if want := "herd: " + c.want + "\n"; r.Code != exitError || r.Stderr != want {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit %d, stderr:\n%s", r.Code, r.Stderr, exitError, want)
			}
		})
	}
}

// TestVersionFlag: herd --version prints what herd version prints.
func TestVersionFlag(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		root := newRootCmd()
		var out strings.Builder
		root.SetOut(&out)
		root.SetArgs(args)
		if err := root.Execute(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if !strings.HasPrefix(out.String(), "herd ") || strings.Contains(out.String(), "herd dev ") {
			t.Fatalf("%v: %q", args, out.String())
		}
	}
}

func TestVCSVersion(t *testing.T) {
	got := vcsVersion([]debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.time", Value: "2026-01-02T15:04:05Z"}, {Key: "vcs.modified", Value: "true"}})
	if got != "0.0.0-20260102150405-0123456789ab+dirty" {
		t.Fatal(got)
	}
}
