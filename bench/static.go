package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The static rows: herd serving files from its master (--static) against nginx serving the
// same files from the same directory, the "within 1.2x of nginx". Only the servers
// that serve files themselves run them: herd (the app behind it is hello, never reached)
// and nginx-static.

// staticFiles are the files of the static apps, by name and size.
var staticFiles = map[string]int{"1k.txt": 1 << 10, "64k.txt": 64 << 10}

// staticDir writes the files once into the run's temp dir and returns the directory.
func (e *env) staticDir() (string, error) {
	dir := filepath.Join(e.tmp, "static")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("static dir: %w", err)
	}
	for name, size := range staticFiles {
		body := bytes.Repeat([]byte("herd static bench\n"), size/18+1)[:size]
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
			return "", fmt.Errorf("static file: %w", err)
		}
	}
	return dir, nil
}

// runs says whether server s has a row for app a.
func (s server) runs(a app) bool {
	switch {
	case s.onlyHello:
		return a.name == "hello"
	case s.onlyStatic:
		return a.static
	case a.static:
		return s.key == "herd"
	}
	return true
}

// staticArgs is herd's --static for a static app, nothing otherwise.
func (e *env) staticArgs(a app) ([]string, error) {
	if !a.static {
		return nil, nil
	}
	dir, err := e.staticDir()
	if err != nil {
		return nil, err
	}
	return []string{"--static", "/static=" + dir}, nil
}

// nginxStaticConf serves the same directory as herd's --static, with what Debian's
// nginx.conf turns on for files (sendfile, tcp_nopush); ETag and Last-Modified are nginx's
// defaults. keepalive_requests is raised so that nginx, like herd, never closes a
// keep-alive connection after a count (its default of 1000 would make wrk reconnect).
const nginxStaticConf = nginxHead + `    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types { text/plain txt; }
` + nginxTempPaths + `    server {
        listen {{LISTEN}};
        location /static/ {
            alias {{STATIC}}/;
        }
    }
}
`

func launchNginxStatic(e *env, a app) (*instance, error) {
	listen, err := freePort()
	if err != nil {
		return nil, err
	}
	static, err := e.staticDir()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(e.tmp, "nginx-static")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("nginx dir: %w", err)
	}
	conf := strings.NewReplacer("{{DIR}}", dir, "{{LISTEN}}", listen, "{{STATIC}}", static).Replace(nginxStaticConf)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("nginx config: %w", err)
	}
	nginx := []string{"nginx", "-p", dir, "-e", filepath.Join(dir, "nginx-error.log"), "-c", confPath, "-g", "daemon off;"}
	return e.launchAll("nginx-static", a, "http://"+listen, map[string][]string{"nginx": nginx}, []string{"nginx"})
}
