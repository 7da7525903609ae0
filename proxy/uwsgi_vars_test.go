package proxy

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/herd-server/herd/protocol"
)

// kv is a protocol.Var a table can write unkeyed.
type kv struct{ Key, Value string }

func toVars(in []kv) []protocol.Var {
	out := make([]protocol.Var, len(in))
	for i, v := range in {
		out[i] = protocol.Var(v)
	}
	return out
}

func TestFrontEndVars(t *testing.T) {
	tests := []struct {
		name      string
		in        []kv
		modifier1 uint8
		want      []kv
		length    int64
		err       error
	}{
		{
			name: "nginx GET: empty CONTENT_TYPE and CONTENT_LENGTH are dropped",
			in:   []kv{{"REQUEST_METHOD", "GET"}, {"CONTENT_TYPE", ""}, {"CONTENT_LENGTH", ""}, {"PATH_INFO", "/x"}},
			want: []kv{{"REQUEST_METHOD", "GET"}, {"PATH_INFO", "/x"}, {"UWSGI_SCHEME", "http"}},
		},
		{
			name:   "nginx de-chunked upload: framed by CONTENT_LENGTH, Transfer-Encoding dropped",
			in:     []kv{{"CONTENT_LENGTH", "10"}, {"HTTP_TRANSFER_ENCODING", "chunked"}},
			want:   []kv{{"CONTENT_LENGTH", "10"}, {"UWSGI_SCHEME", "http"}},
			length: 10,
		},
		{
			name: "a key dropped and set again comes back last; a repeated key keeps its first place",
			in: []kv{{"CONTENT_LENGTH", "5"}, {"A", "1"}, {"CONTENT_LENGTH", ""}, {"B", "2"},
				{"A", "3"}, {"CONTENT_LENGTH", "7"}},
			want:   []kv{{"A", "3"}, {"B", "2"}, {"CONTENT_LENGTH", "7"}, {"UWSGI_SCHEME", "http"}},
			length: 7,
		},
		{
			name: "UWSGI_* vars are dropped",
			in: []kv{{"UWSGI_FILE", "/tmp/evil.py"}, {"UWSGI_SCRIPT", "evil"}, {"UWSGI_MODULE", "evil"},
				{"UWSGI_CHDIR", "/tmp"}, {"UWSGI_APPID", "x"}, {"SCRIPT_NAME", "/s"}},
			want: []kv{{"SCRIPT_NAME", "/s"}, {"UWSGI_SCHEME", "http"}},
		},
		{
			name: "HTTPS on means https",
			in:   []kv{{"HTTPS", "on"}},
			want: []kv{{"HTTPS", "on"}, {"UWSGI_SCHEME", "https"}},
		},
		{
			name: "the front end's UWSGI_SCHEME wins when it is http or https",
			in:   []kv{{"HTTPS", "on"}, {"UWSGI_SCHEME", "http"}},
			want: []kv{{"HTTPS", "on"}, {"UWSGI_SCHEME", "http"}},
		},
		{
			name: "any other UWSGI_SCHEME is ignored",
			in:   []kv{{"UWSGI_SCHEME", "javascript"}},
			want: []kv{{"UWSGI_SCHEME", "http"}},
		},
		{
			name:   "a repeated key keeps its last value, as the worker would",
			in:     []kv{{"CONTENT_LENGTH", "5"}, {"PATH_INFO", "/a"}, {"CONTENT_LENGTH", "7"}, {"PATH_INFO", "/b"}},
			want:   []kv{{"PATH_INFO", "/b"}, {"CONTENT_LENGTH", "7"}, {"UWSGI_SCHEME", "http"}},
			length: 7,
		},
		{
			name:      "modifier1 30 strips SCRIPT_NAME from PATH_INFO",
			in:        []kv{{"SCRIPT_NAME", "/app/"}, {"PATH_INFO", "/app/x"}},
			modifier1: modifierManagePathInfo,
			want:      []kv{{"SCRIPT_NAME", "/app"}, {"PATH_INFO", "/x"}, {"UWSGI_SCHEME", "http"}},
		},
		{
			name:      "modifier1 30 only at a segment boundary",
			in:        []kv{{"SCRIPT_NAME", "/app"}, {"PATH_INFO", "/apple"}},
			modifier1: modifierManagePathInfo,
			want:      []kv{{"SCRIPT_NAME", "/app"}, {"PATH_INFO", "/apple"}, {"UWSGI_SCHEME", "http"}},
		},
		{name: "negative CONTENT_LENGTH", in: []kv{{"CONTENT_LENGTH", "-1"}}, err: errBadRequest},
		{name: "signed CONTENT_LENGTH", in: []kv{{"CONTENT_LENGTH", "+1"}}, err: errBadRequest},
		{name: "CONTENT_LENGTH not a number", in: []kv{{"CONTENT_LENGTH", "1, 2"}}, err: errBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := frontEndVars(toVars(tt.in), tt.modifier1)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.vars, toVars(tt.want)) || got.contentLength != tt.length {
				t.Errorf("got %v length %d\nwant %v length %d", got.vars, got.contentLength, tt.want, tt.length)
			}
		})
	}
}

func TestMountVars(t *testing.T) {
	tests := []struct {
		name     string
		in       []kv
		prefix   string
		want     []kv
		accepted bool
	}{
		{"no mount", []kv{{"PATH_INFO", "/x"}, {"SCRIPT_NAME", ""}}, "", []kv{{"PATH_INFO", "/x"}, {"SCRIPT_NAME", ""}}, true},
		{"under the prefix", []kv{{"PATH_INFO", "/app/x/y"}, {"SCRIPT_NAME", ""}}, "/app",
			[]kv{{"PATH_INFO", "/x/y"}, {"SCRIPT_NAME", "/app"}}, true},
		{"the prefix itself", []kv{{"PATH_INFO", "/app"}, {"SCRIPT_NAME", ""}}, "/app",
			[]kv{{"PATH_INFO", ""}, {"SCRIPT_NAME", "/app"}}, true},
		{"a longer name is outside", []kv{{"PATH_INFO", "/apple"}, {"SCRIPT_NAME", ""}}, "/app",
			[]kv{{"PATH_INFO", "/apple"}, {"SCRIPT_NAME", ""}}, false},
		{"outside", []kv{{"PATH_INFO", "/"}}, "/app", []kv{{"PATH_INFO", "/"}}, false},
		{"a front end's SCRIPT_NAME is kept", []kv{{"PATH_INFO", "/x"}, {"SCRIPT_NAME", "/site"}}, "/app",
			[]kv{{"PATH_INFO", "/x"}, {"SCRIPT_NAME", "/site"}}, true},
		{"missing vars are added", []kv{{"PATH_INFO", "/app/x"}}, "/app",
			[]kv{{"PATH_INFO", "/x"}, {"SCRIPT_NAME", "/app"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := mountVars(toVars(tt.in), tt.prefix)
			if ok != tt.accepted || ok && !reflect.DeepEqual(got, toVars(tt.want)) {
				t.Errorf("got %v %v, want %v %v", got, ok, tt.want, tt.accepted)
			}
		})
	}
}

// TestVarSetAgainstMap: the in-place set (a scan for few vars, a map for many) keeps the
// same vars in the same order as a plain map-and-list model, for random sets, drops and
// returns of keys on both sides of scanLimit.
func TestVarSetAgainstMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 2000 {
		n := rng.IntN(2 * scanLimit)
		keys := 1 + rng.IntN(n+1)
		in := make([]protocol.Var, n)
		for i := range in {
			in[i] = protocol.Var{Key: fmt.Sprintf("K%d", rng.IntN(keys)), Value: fmt.Sprint(i)}
		}
		drops := map[int]bool{} // positions whose var is a drop of its key instead
		for i := range in {
			if rng.IntN(5) == 0 {
				drops[i] = true
			}
		}
		// The model: a list of places, a map from key to place.
		var model []protocol.Var
		place := map[string]int{}
		for i, v := range in {
			if drops[i] {
				if p, ok := place[v.Key]; ok {
					model[p].Key = ""
					delete(place, v.Key)
				}
				continue
			}
			if p, ok := place[v.Key]; ok {
				model[p].Value = v.Value
				continue
			}
			place[v.Key] = len(model)
			model = append(model, v)
		}
		want := []protocol.Var{}
		for _, v := range model {
			if v.Key != "" {
				want = append(want, v)
			}
		}
		// As frontEndVars does: the set writes into the very slice being walked.
		walked := slices.Clone(in)
		set := newVarSet(walked)
		for i, v := range walked {
			if drops[i] {
				set.drop(v.Key)
			} else {
				set.set(v)
			}
		}
		if got := append([]protocol.Var{}, set.vars()...); !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d (%d vars, %d keys):\n got %v\nwant %v", round, n, keys, got, want)
		}
	}
}
