package protocol

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseHeader(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want Header
		err  error
	}{
		{"nginx GET", []byte{0, 0x34, 0x01, 0}, Header{0, 0x0134, 0}, nil},
		{"keep-alive", []byte{0, 10, 0, 1}, Header{0, 10, 1}, nil},
		{"max size", []byte{0, 0xff, 0xff, 0}, Header{0, 0xffff, 0}, nil},
		{"other modifier1", []byte{5, 1, 0, 0}, Header{5, 1, 0}, nil},
		{"short", []byte{0, 1, 0}, Header{}, ErrShortHeader},
		{"empty", nil, Header{}, ErrShortHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseHeader(tt.in)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeVarsFromHandBuiltBytes(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want []Var
		err  error
	}{
		{"empty block", nil, nil, nil},
		{
			"one var",
			[]byte{4, 0, 'P', 'A', 'T', 'H', 1, 0, '/'},
			[]Var{{"PATH", "/"}},
			nil,
		},
		{
			"empty value (nginx CONTENT_TYPE on GET)",
			[]byte{2, 0, 'C', 'T', 0, 0},
			[]Var{{"CT", ""}},
			nil,
		},
		{
			"two vars, order kept, repeated key kept",
			[]byte{1, 0, 'A', 1, 0, '1', 1, 0, 'A', 1, 0, '2'},
			[]Var{{"A", "1"}, {"A", "2"}},
			nil,
		},
		{"key length past end", []byte{9, 0, 'A'}, nil, ErrTruncatedVars},
		{"value length missing", []byte{1, 0, 'A'}, nil, ErrTruncatedVars},
		{"value length past end", []byte{1, 0, 'A', 5, 0, 'x'}, nil, ErrTruncatedVars},
		{"odd trailing byte", []byte{1, 0, 'A', 0, 0, 7}, nil, ErrTruncatedVars},
		{"empty key", []byte{0, 0, 1, 0, 'x'}, nil, ErrEmptyKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeVars(tt.in)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if tt.err == nil && !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestAppendPacketBytes(t *testing.T) {
	got, err := AppendPacket(nil, ModifierKeepAlive, []Var{{"A", "bc"}, {"DE", ""}})
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{
		0, 13, 0, 1, // header: modifier1 0, datasize 13, modifier2 1
		1, 0, 'A', 2, 0, 'b', 'c',
		2, 0, 'D', 'E', 0, 0,
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got % x\nwant % x", got, want)
	}
}

func TestAppendPacketRefusesOversizedVars(t *testing.T) {
	big := strings.Repeat("x", 40000)
	_, err := AppendPacket(nil, 0, []Var{{"A", big}, {"B", big}})
	if !errors.Is(err, ErrVarsTooLarge) {
		t.Fatalf("two 40000-byte values: err = %v, want ErrVarsTooLarge", err)
	}
	_, err = AppendPacket(nil, 0, []Var{{"A", strings.Repeat("x", 70000)}})
	if !errors.Is(err, ErrVarTooLarge) {
		t.Fatalf("one 70000-byte value: err = %v, want ErrVarTooLarge", err)
	}
	// Exactly at the limit is fine: 4 bytes of lengths + 1 byte key + value.
	exact := strings.Repeat("y", MaxVarsSize-5)
	pkt, err := AppendPacket(nil, 0, []Var{{"K", exact}})
	if err != nil {
		t.Fatalf("vars of exactly %d bytes: %v", MaxVarsSize, err)
	}
	h, _ := ParseHeader(pkt)
	if int(h.DataSize) != MaxVarsSize {
		t.Fatalf("datasize = %d, want %d", h.DataSize, MaxVarsSize)
	}
}

func typicalVars() []Var {
	return []Var{
		{"REQUEST_METHOD", "GET"}, {"REQUEST_URI", "/articles/42?page=2"},
		{"PATH_INFO", "/articles/42"}, {"QUERY_STRING", "page=2"},
		{"SCRIPT_NAME", ""}, {"SERVER_PROTOCOL", "HTTP/1.1"},
		{"SERVER_NAME", "127.0.0.1"}, {"SERVER_PORT", "8000"},
		{"REMOTE_ADDR", "127.0.0.1"}, {"REMOTE_PORT", "51234"},
		{"CONTENT_TYPE", ""}, {"CONTENT_LENGTH", ""},
		{"HTTP_HOST", "127.0.0.1:8000"}, {"HTTP_USER_AGENT", "Mozilla/5.0 (X11; Linux x86_64)"},
		{"HTTP_ACCEPT", "text/html,application/xhtml+xml"}, {"HTTP_ACCEPT_ENCODING", "gzip, deflate"},
		{"HTTP_ACCEPT_LANGUAGE", "en-US,en;q=0.5"}, {"HTTP_CONNECTION", "keep-alive"},
		{"HTTP_COOKIE", "sessionid=abc123; csrftoken=xyz"}, {"UWSGI_SCHEME", "http"},
	}
}

func TestRoundTrip(t *testing.T) {
	vars := typicalVars()
	pkt, err := AppendPacket(nil, ModifierPlain, vars)
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseHeader(pkt)
	if err != nil {
		t.Fatal(err)
	}
	if int(h.DataSize) != len(pkt)-HeaderSize {
		t.Fatalf("datasize %d, block is %d bytes", h.DataSize, len(pkt)-HeaderSize)
	}
	got, err := DecodeVars(pkt[HeaderSize:])
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, vars) {
		t.Fatalf("round trip changed vars:\n%+v\n%+v", got, vars)
	}
}

func TestEncodeTypicalRequestAllocatesAtMostOnce(t *testing.T) {
	vars := typicalVars()
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := AppendPacket(nil, ModifierKeepAlive, vars); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Fatalf("encoding a 20-var request allocated %v times, want <= 1", allocs)
	}
}

func BenchmarkAppendPacket20Vars(b *testing.B) {
	vars := typicalVars()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := AppendPacket(nil, ModifierKeepAlive, vars); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendPacket20VarsReusedBuffer(b *testing.B) {
	vars := typicalVars()
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = AppendPacket(buf[:0], ModifierKeepAlive, vars); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeVars20(b *testing.B) {
	pkt, _ := AppendPacket(nil, 0, typicalVars())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeVars(pkt[HeaderSize:]); err != nil {
			b.Fatal(err)
		}
	}
}

func TestAppendPacketNUL(t *testing.T) {
	tests := []struct {
		name  string
		vars  []Var
		block string // the vars block after the 4-byte header
		ok    bool
	}{
		{"no vars", nil, "", true},
		{"one var", []Var{{"PATH_INFO", "/"}}, "PATH_INFO\x00/", true},
		{"two vars, order kept", []Var{{"A", "bc"}, {"DE", "f"}}, "A\x00bc\x00DE\x00f", true},
		{"empty last value ends on its separator", []Var{{"A", "bc"}, {"DE", ""}}, "A\x00bc\x00DE\x00", true},
		{"empty values", []Var{{"A", ""}, {"B", ""}}, "A\x00\x00B\x00", true},
		{"empty key and value", []Var{{"", ""}}, "\x00", true},
		{"repeated key kept", []Var{{"A", "1"}, {"A", "2"}}, "A\x001\x00A\x002", true},
		{"latin-1 bytes as they are", []Var{{"PATH_INFO", "/caf\xc3\xa9\xff"}}, "PATH_INFO\x00/caf\xc3\xa9\xff", true},
		{"NUL in a value", []Var{{"A", "b"}, {"PATH_INFO", "/a\x00b"}}, "", false},
		{"NUL in a key", []Var{{"A\x00", "b"}}, "", false},
		{"NUL alone", []Var{{"A", "\x00"}}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("prefix")
			got, ok, err := AppendPacketNUL(prefix, tt.vars)
			if err != nil || ok != tt.ok {
				t.Fatalf("ok = %v, err = %v; want ok = %v", ok, err, tt.ok)
			}
			if !ok {
				if string(got) != "prefix" {
					t.Fatalf("refused, but dst changed to %q", got)
				}
				return
			}
			want := append([]byte("prefix\x00\x00\x00\x02"), tt.block...)
			want[len("prefix")+1], want[len("prefix")+2] = byte(len(tt.block)), byte(len(tt.block)>>8)
			if !bytes.Equal(got, want) {
				t.Fatalf("got % x\nwant % x", got, want)
			}
			if size, err := VarsSizeNUL(tt.vars); size != len(tt.block) || err != nil {
				t.Fatalf("VarsSizeNUL = %d, %v; want %d", size, err, len(tt.block))
			}
		})
	}
}

func TestAppendPacketNULSizeLimit(t *testing.T) {
	big := strings.Repeat("x", 40000)
	if _, ok, err := AppendPacketNUL(nil, []Var{{"A", big}, {"B", big}}); !errors.Is(err, ErrVarsTooLarge) || !ok {
		t.Fatalf("two 40000-byte values: ok %v, err = %v, want ErrVarsTooLarge", ok, err)
	}
	// Exactly at the limit: key, NUL, value.
	exact := strings.Repeat("y", MaxVarsSize-2)
	pkt, ok, err := AppendPacketNUL(nil, []Var{{"K", exact}})
	if err != nil || !ok {
		t.Fatalf("vars of exactly %d bytes: %v %v", MaxVarsSize, ok, err)
	}
	if h, _ := ParseHeader(pkt); int(h.DataSize) != MaxVarsSize || h.Modifier2 != ModifierKeepAliveNUL {
		t.Fatalf("header %+v, want datasize %d, modifier2 %d", h, MaxVarsSize, ModifierKeepAliveNUL)
	}
	// Past the classic form's limit, still within this one's.
	vars := make([]Var, 0, 8000)
	for range cap(vars) {
		vars = append(vars, Var{"KEY", "val"})
	}
	if _, err := AppendPacket(nil, ModifierKeepAlive, vars); !errors.Is(err, ErrVarsTooLarge) {
		t.Fatalf("8000 vars, classic form: err = %v, want ErrVarsTooLarge", err)
	}
	if _, ok, err := AppendPacketNUL(nil, vars); !ok || err != nil {
		t.Fatalf("8000 vars, NUL-joined: ok %v, err %v", ok, err)
	}
}

func TestDecodeVarsNUL(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Var
		err  error
	}{
		{"empty block", "", nil, nil},
		{"one var", "PATH\x00/", []Var{{"PATH", "/"}}, nil},
		{"empty last value", "A\x00b\x00C\x00", []Var{{"A", "b"}, {"C", ""}}, nil},
		{"empty values", "A\x00\x00B\x00", []Var{{"A", ""}, {"B", ""}}, nil},
		{"key alone", "A", nil, ErrOddFields},
		{"key without value after a var", "A\x00b\x00C", nil, ErrOddFields},
		{"trailing NUL", "A\x00b\x00", nil, ErrOddFields},
		{"empty key", "\x00v", nil, ErrEmptyKey},
		{"empty key later", "A\x00b\x00\x00v", nil, ErrEmptyKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeVarsNUL([]byte(tt.in))
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if tt.err == nil && !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestEncodeNULTypicalRequestAllocatesAtMostOnce(t *testing.T) {
	vars := typicalVars()
	allocs := testing.AllocsPerRun(100, func() {
		if _, ok, err := AppendPacketNUL(nil, vars); !ok || err != nil {
			t.Fatal(ok, err)
		}
	})
	if allocs > 1 {
		t.Fatalf("encoding a 20-var request allocated %v times, want <= 1", allocs)
	}
}

func BenchmarkAppendPacketNUL20Vars(b *testing.B) {
	vars := typicalVars()
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, err := AppendPacketNUL(nil, vars); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkAppendPacketNUL20VarsReusedBuffer(b *testing.B) {
	vars := typicalVars()
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		var ok bool
		var err error
		if buf, ok, err = AppendPacketNUL(buf[:0], vars); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}
