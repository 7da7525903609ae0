package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseStaticMap(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f.ico")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	good := []struct{ spec, prefix, path string }{
		{"/static=" + dir, "/static", dir},
		{"/static/=" + dir, "/static", dir},
		{" /a//b/ = " + dir, "/a/b", dir},
		{"/=" + dir, "/", dir},
		{"/favicon.ico=" + file, "/favicon.ico", file},
	}
	for _, g := range good {
		d, err := ParseStaticMap(g.spec)
		if err != nil || d.Prefix != g.prefix || d.Path != g.path {
			t.Errorf("%q: %+v %v", g.spec, d, err)
		}
	}
	bad := map[string]string{
		"static=" + dir:            "the prefix must begin with /",
		"/static":                  "is not /PREFIX=DIR",
		"/static=":                 "is not /PREFIX=DIR",
		"/a/../b=" + dir:           "must not contain ..",
		"/static=" + dir + "/nope": "no such file or directory",
		"/null=/dev/null":          "neither a directory nor a regular file",
	}
	for spec, want := range bad {
		if _, err := ParseStaticMap(spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error with %q", spec, err, want)
		}
	}
}
