package static

import (
	"cmp"
	"mime"
	"path"
	"slices"
	"strconv"
	"strings"
)

// encoding is a precompressed sibling a file may have.
type encoding struct {
	name   string // the Content-Encoding token
	suffix string // appended to the file's name
}

// encodings in herd's order of preference when the client's q-values tie: Brotli files are
// the smaller.
var encodings = []encoding{{name: "br", suffix: ".br"}, {name: "gzip", suffix: ".gz"}}

// acceptedEncodings returns the codings of encodings the client accepts (RFC 9110 12.5.3),
// best first: by q-value, then herd's preference. "x-gzip" counts as gzip; "*" stands for
// every coding not named; q=0 refuses.
func acceptedEncodings(header string) []encoding {
	if header == "" {
		return nil
	}
	q := make([]float64, len(encodings))
	for i := range q {
		q[i] = -1 // not named
	}
	star := -1.0
	for part := range strings.SplitSeq(header, ",") {
		token, params, _ := strings.Cut(part, ";")
		token = strings.ToLower(strings.TrimSpace(token))
		if token == "x-gzip" {
			token = "gzip"
		}
		weight := qValue(params)
		if token == "*" {
			star = weight
		}
		for i, e := range encodings {
			if e.name == token {
				q[i] = weight
			}
		}
	}
	type weighted struct {
		e encoding
		q float64
	}
	var ws []weighted
	for i, e := range encodings {
		if q[i] < 0 {
			q[i] = star
		}
		if q[i] > 0 {
			ws = append(ws, weighted{e, q[i]})
		}
	}
	slices.SortStableFunc(ws, func(a, b weighted) int { return cmp.Compare(b.q, a.q) })
	out := make([]encoding, len(ws))
	for i, w := range ws {
		out[i] = w.e
	}
	return out
}

// qValue reads the q parameter of one Accept-Encoding element: 1 when absent, 0 when it
// cannot be read (better not to guess that the client accepts).
func qValue(params string) float64 {
	for p := range strings.SplitSeq(params, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || f < 0 || f > 1 {
			return 0
		}
		return f
	}
	return 1
}

// contentType is the type of rel by its extension (Go's table and /etc/mime.types), "" when
// unknown: http.ServeContent then sniffs the first 512 bytes.
func contentType(rel string) string {
	return mime.TypeByExtension(path.Ext(rel))
}
