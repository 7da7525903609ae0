package accesslog

import (
	"fmt"
	"strings"
)

// gunicornAtoms are gunicorn's access_log_format atoms, as herd's {fields}. gunicorn's p (the
// worker's pid) is herd's worker id; its {header}o (a response header) herd does not log.
var gunicornAtoms = map[string]string{
	"h": "{remote_host}", "l": "-", "u": "{remote_user}", "t": "[{time_clf}]",
	"r": "{method} {uri} {proto}", "m": "{method}", "U": "{path}", "q": "{query}", "H": "{proto}",
	"s": "{status}", "B": "{bytes}", "b": "{bytes_clf}", "f": "{referer}", "a": "{user_agent}",
	"T": "{duration_s}", "D": "{duration_us}", "L": "{duration}", "M": "{duration_ms_int}", "p": "<{worker}>",
}

// fromGunicorn turns a gunicorn access_log_format into a herd template: %(atom)s and
// %({Header}i)s (a request header), %({VAR}e)s for the environ's HTTP_* and REMOTE_ADDR.
func fromGunicorn(spec string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(spec); i++ {
		if !strings.HasPrefix(spec[i:], "%(") {
			b.WriteByte(spec[i])
			continue
		}
		end := strings.Index(spec[i:], ")s")
		if end < 0 {
			return "", fmt.Errorf("access-log-format: %q: %%( without )s", spec)
		}
		atom := spec[i+2 : i+end]
		field, err := gunicornAtom(atom)
		if err != nil {
			return "", fmt.Errorf("access-log-format: %%(%s)s: %w", atom, err)
		}
		b.WriteString(field)
		i += end + 1
	}
	return b.String(), nil
}

func gunicornAtom(atom string) (string, error) {
	if f, ok := gunicornAtoms[atom]; ok {
		return f, nil
	}
	if len(atom) > 3 && atom[0] == '{' && atom[len(atom)-2] == '}' {
		name, kind := atom[1:len(atom)-2], atom[len(atom)-1]
		switch {
		case kind == 'i':
			return "{header:" + name + "}", nil
		case kind == 'e' && strings.EqualFold(name, "REMOTE_ADDR"):
			return "{remote_host}", nil
		case kind == 'e' && strings.HasPrefix(strings.ToUpper(name), "HTTP_"):
			return "{header:" + strings.ReplaceAll(name[5:], "_", "-") + "}", nil
		case kind == 'o':
			return "", fmt.Errorf("herd does not log response headers")
		}
	}
	return "", fmt.Errorf("not an atom herd knows (h l u t r m U q H s B b f a T D L M p, {header}i, {HTTP_*}e)")
}
