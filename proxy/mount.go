package proxy

import (
	"strings"

	"github.com/herd-server/herd/protocol"
)

// mountVars applies the --mount prefix to a request's vars: a PATH_INFO under the prefix
// moves the prefix to SCRIPT_NAME, as uWSGI's --mount with --manage-script-name does. It
// reports false for a path outside the prefix (the caller answers 404). A SCRIPT_NAME that
// a front end set already is its routing decision and is left as it is. No I/O.
func mountVars(vars []protocol.Var, prefix string) ([]protocol.Var, bool) {
	if prefix == "" {
		return vars, true
	}
	pathAt, scriptAt := varIndex(vars, "PATH_INFO"), varIndex(vars, "SCRIPT_NAME")
	if scriptAt >= 0 && vars[scriptAt].Value != "" {
		return vars, true
	}
	path := ""
	if pathAt >= 0 {
		path = vars[pathAt].Value
	}
	rest, ok := underPrefix(path, prefix)
	if !ok {
		return vars, false
	}
	if pathAt < 0 {
		vars = append(vars, protocol.Var{Key: "PATH_INFO"})
		pathAt = len(vars) - 1
	}
	vars[pathAt].Value = rest
	if scriptAt < 0 {
		vars = append(vars, protocol.Var{Key: "SCRIPT_NAME"})
		scriptAt = len(vars) - 1
	}
	vars[scriptAt].Value = prefix
	return vars, true
}

// stripScriptName is uWSGI's modifier1 30 (nginx's `uwsgi_modifier1 30`): the front end
// sends the full path in PATH_INFO along with SCRIPT_NAME, and the server removes the
// SCRIPT_NAME part from PATH_INFO. Unlike uWSGI, only at a path segment boundary: a
// SCRIPT_NAME of /app leaves /apple alone.
func stripScriptName(vars []protocol.Var) {
	pathAt, scriptAt := varIndex(vars, "PATH_INFO"), varIndex(vars, "SCRIPT_NAME")
	if pathAt < 0 || scriptAt < 0 {
		return
	}
	script := strings.TrimRight(vars[scriptAt].Value, "/")
	if rest, ok := underPrefix(vars[pathAt].Value, script); ok && script != "" {
		vars[pathAt].Value = rest
		vars[scriptAt].Value = script
	}
}

// underPrefix is path without prefix when path is prefix itself or below it.
func underPrefix(path, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(path, prefix)
	if !ok || rest != "" && rest[0] != '/' {
		return path, false
	}
	return rest, true
}

// varIndex is the index of the last var named key (a repeated key: the worker keeps the
// last), or -1.
func varIndex(vars []protocol.Var, key string) int {
	for i := len(vars) - 1; i >= 0; i-- {
		if vars[i].Key == key {
			return i
		}
	}
	return -1
}
