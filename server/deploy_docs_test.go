package server

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/herd-server/herd/config"
	"github.com/herd-server/herd/internal/herdtest"
)

// TestDeployDocs keeps the deployment templates in docs/deploy honest: the Kubernetes
// manifests parse and their herd.yaml is a valid herd configuration with the drain set up,
// and systemd accepts the units.
func TestDeployDocs(t *testing.T) {
	dir := filepath.Join(herdtest.RepoRoot(t), "docs", "deploy")
	t.Run("kubernetes", func(t *testing.T) {
		herdYAML := configMapHerdYAML(t, filepath.Join(dir, "kubernetes.yaml"))
		file := filepath.Join(t.TempDir(), "herd.yaml")
		if err := os.WriteFile(file, []byte(herdYAML), 0o600); err != nil {
			t.Fatal(err)
		}
		flags := pflag.NewFlagSet("serve", pflag.ContinueOnError)
		config.RegisterFlags(flags)
		cfg, err := config.Load(flags, file)
		if err != nil {
			t.Fatalf("the ConfigMap's herd.yaml does not load: %v", err)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("the ConfigMap's herd.yaml is not valid: %v", err)
		}
		if cfg.ShutdownDelay <= 0 || cfg.Admin == "" || cfg.ShutdownDelay+cfg.GracefulTimeout+5*time.Second > 45*time.Second {
			t.Errorf("drain settings do not fit terminationGracePeriodSeconds 45: delay %s, graceful %s, admin %q",
				cfg.ShutdownDelay, cfg.GracefulTimeout, cfg.Admin)
		}
	})
	t.Run("systemd", func(t *testing.T) {
		analyze := herdtest.RequireTool(t, "systemd-analyze", "systemd")
		units := t.TempDir()
		for _, name := range []string{"herd.service", "herd.socket"} {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			// Verify checks that ExecStart= exists: point it at the binary under test.
			b = bytes.ReplaceAll(b, []byte("/usr/local/bin/herd"), []byte(herdtest.Binary(t)))
			if err := os.WriteFile(filepath.Join(units, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		checkExecStartFlags(t, filepath.Join(dir, "herd.service"))
		out, err := exec.Command(analyze, "verify", "--man=no", filepath.Join(units, "herd.socket"), filepath.Join(units, "herd.service")).CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	})
}

// checkExecStartFlags parses the unit's `herd serve` command line with serve's own flags, so
// that a renamed or misspelt option in the template fails here rather than on a server.
func checkExecStartFlags(t *testing.T, unit string) {
	t.Helper()
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	var args []string
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, "ExecStart="); ok {
			args = strings.Fields(rest)
		}
	}
	if len(args) < 3 || args[1] != "serve" {
		t.Fatalf("%s: ExecStart is not a herd serve command line: %q", unit, args)
	}
	flags := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	config.RegisterFlags(flags)
	if err := flags.Parse(args[2:]); err != nil {
		t.Fatalf("%s: ExecStart flags: %v", unit, err)
	}
	if got := flags.Args(); len(got) != 1 {
		t.Errorf("%s: ExecStart names %d apps (%q), want one", unit, len(got), got)
	}
}

// configMapHerdYAML parses every document of the manifest and returns the ConfigMap's
// herd.yaml.
func configMapHerdYAML(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	kinds := []string{}
	herdYAML := ""
	for {
		var doc struct {
			Kind string            `yaml:"kind"`
			Data map[string]string `yaml:"data"`
		}
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		kinds = append(kinds, doc.Kind)
		if doc.Kind == "ConfigMap" {
			herdYAML = doc.Data["herd.yaml"]
		}
	}
	if got := strings.Join(kinds, ","); got != "ConfigMap,Deployment,Service,PodDisruptionBudget" {
		t.Errorf("manifest kinds %s", got)
	}
	if herdYAML == "" {
		t.Fatal("no herd.yaml in the ConfigMap")
	}
	return herdYAML
}
