package config

import (
	"fmt"
	"slices"
	"strings"
)

// uWSGI's log-format (logformat) is a line of %(variable)s; herd's --access-log-format is a
// template of {fields} (proxy/accesslog). uwsgiLogVars maps each uWSGI variable herd can
// log to its field; %(var.NAME) (a request variable) becomes a request header or
// {remote_host} for the variables those carry.
var uwsgiLogVars = map[string]string{
	"addr": "{remote_host}", "user": "{remote_user}", "ltime": "{time_clf}", "method": "{method}",
	"uri": "{uri}", "proto": "{proto}", "status": "{status}", "size": "{bytes}", "rsize": "{bytes}",
	"cl": "{bytes_in}", "host": "{host}", "referer": "{referer}", "uagent": "{user_agent}",
	"msecs": "{duration_ms_int}", "micros": "{duration_us}", "secs": "{duration}", "wid": "{worker}",
	"time": "{time_unix}", "epoch": "{time_unix}", "tmsecs": "{time_unix_ms}", "tmicros": "{time_unix_us}",
	"ctime": "{time_ctime}",
}

// uwsgiLogFormat translates uWSGI's log-format into herd's template.
func uwsgiLogFormat(values []string, _ Option) (any, error) {
	v := values[len(values)-1]
	var b strings.Builder
	var unknown []string
	for i := 0; i < len(v); i++ {
		if v[i] != '%' || i+1 >= len(v) || v[i+1] != '(' {
			b.WriteByte(v[i])
			continue
		}
		end := strings.IndexByte(v[i:], ')')
		if end < 0 {
			return nil, fmt.Errorf("unclosed %%( in %q", v)
		}
		name := v[i+2 : i+end]
		field, ok := uwsgiLogVar(name)
		if !ok {
			unknown = append(unknown, "%("+name+")")
		}
		b.WriteString(field)
		i += end
	}
	if len(unknown) > 0 {
		known := make([]string, 0, len(uwsgiLogVars))
		for k := range uwsgiLogVars {
			known = append(known, k)
		}
		slices.Sort(known)
		return nil, fmt.Errorf("herd cannot log %s; it logs %s and %%(var.HTTP_*)", strings.Join(unknown, ", "), strings.Join(known, ", "))
	}
	return b.String(), nil
}

func uwsgiLogVar(name string) (string, bool) {
	if f, ok := uwsgiLogVars[name]; ok {
		return f, true
	}
	v, ok := strings.CutPrefix(name, "var.")
	switch {
	case !ok:
		return "", false
	case v == "REMOTE_ADDR":
		return "{remote_host}", true
	case v == "REQUEST_URI":
		return "{uri}", true
	case v == "PATH_INFO":
		return "{path}", true
	case v == "QUERY_STRING":
		return "{query}", true
	case strings.HasPrefix(v, "HTTP_"):
		h := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(v, "HTTP_")), "_", "-")
		return "{header:" + h + "}", true
	}
	return "", false
}
