package protocol

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// FuzzDecodeVars: decoding arbitrary bytes never panics, and whatever decodes re-encodes to
// the same bytes.
func FuzzDecodeVars(f *testing.F) {
	pkt, _ := AppendPacket(nil, 0, typicalVars())
	f.Add(pkt[HeaderSize:])
	f.Add([]byte{1, 0, 'A', 0, 0})
	f.Add([]byte{9, 0, 'A'})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		vars, err := DecodeVars(b)
		if err != nil {
			return
		}
		again, err := AppendPacket(nil, 0, vars)
		if err != nil {
			t.Fatalf("decoded vars do not re-encode: %v", err)
		}
		if string(again[HeaderSize:]) != string(b) {
			t.Fatalf("re-encoding changed the block:\n% x\n% x", again[HeaderSize:], b)
		}
	})
}

// FuzzRoundTrip: decode(encode(x)) == x for any vars that encode.
func FuzzRoundTrip(f *testing.F) {
	f.Add("REQUEST_METHOD", "GET", "PATH_INFO", "/caf\xc3\xa9", uint8(1))
	f.Add("K", "", "", "v", uint8(0))
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string, mod2 uint8) {
		vars := []Var{{k1, v1}, {k2, v2}}
		pkt, err := AppendPacket(nil, mod2, vars)
		if err != nil {
			return
		}
		h, err := ParseHeader(pkt)
		if err != nil || h.Modifier2 != mod2 || int(h.DataSize) != len(pkt)-HeaderSize {
			t.Fatalf("header %+v, err %v", h, err)
		}
		got, err := DecodeVars(pkt[HeaderSize:])
		if k1 == "" || k2 == "" {
			if err == nil {
				t.Fatalf("empty key decoded without error")
			}
			return
		}
		if err != nil {
			t.Fatalf("decode of encoded vars: %v", err)
		}
		if !reflect.DeepEqual(got, vars) {
			t.Fatalf("got %+v want %+v", got, vars)
		}
	})
}

// FuzzDecodeVarsNUL: decoding arbitrary bytes as a NUL-joined block never panics, and
// whatever decodes re-encodes to the same bytes.
func FuzzDecodeVarsNUL(f *testing.F) {
	pkt, _, _ := AppendPacketNUL(nil, typicalVars())
	f.Add(pkt[HeaderSize:])
	f.Add([]byte("A\x00"))
	f.Add([]byte("A\x00b\x00"))
	f.Add([]byte{0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		vars, err := DecodeVarsNUL(b)
		if err != nil {
			return
		}
		again, ok, err := AppendPacketNUL(nil, vars)
		if !ok || err != nil {
			t.Fatalf("decoded vars do not re-encode: %v %v", ok, err)
		}
		if string(again[HeaderSize:]) != string(b) {
			t.Fatalf("re-encoding changed the block:\n% x\n% x", again[HeaderSize:], b)
		}
	})
}

// FuzzRoundTripNUL: decode(encode(x)) == x for any vars the NUL-joined form takes, and it
// refuses exactly the vars with a NUL byte.
func FuzzRoundTripNUL(f *testing.F) {
	f.Add("REQUEST_METHOD", "GET", "PATH_INFO", "/caf\xc3\xa9")
	f.Add("K", "", "", "v")
	f.Add("K", "", "L", "")
	f.Add("PATH_INFO", "/a\x00b", "K", "v")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		vars := []Var{{k1, v1}, {k2, v2}}
		pkt, ok, err := AppendPacketNUL(nil, vars)
		if nul := strings.IndexByte(k1+v1+k2+v2, 0) >= 0; ok == nul {
			t.Fatalf("ok = %v with a NUL byte %v", ok, nul)
		}
		if !ok {
			if len(pkt) != 0 {
				t.Fatalf("refused, but wrote % x", pkt)
			}
			return
		}
		if err != nil {
			if !errors.Is(err, ErrVarsTooLarge) {
				t.Fatalf("err = %v", err)
			}
			return
		}
		h, err := ParseHeader(pkt)
		if err != nil || h.Modifier2 != ModifierKeepAliveNUL || int(h.DataSize) != len(pkt)-HeaderSize {
			t.Fatalf("header %+v, err %v", h, err)
		}
		got, err := DecodeVarsNUL(pkt[HeaderSize:])
		if k1 == "" || k2 == "" {
			if !errors.Is(err, ErrEmptyKey) {
				t.Fatalf("empty key: err = %v, want ErrEmptyKey", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("decode of encoded vars: %v", err)
		}
		if !reflect.DeepEqual(got, vars) {
			t.Fatalf("got %+v want %+v", got, vars)
		}
	})
}

// FuzzDecodeFrame: decoding arbitrary bytes never panics; a frame that decodes re-encodes
// to the same bytes, and its payload decodes by its type's layout or fails with an error.
func FuzzDecodeFrame(f *testing.F) {
	f.Add(AppendFrame(nil, FrameResponseStart, 0, 1, AppendResponseStart(nil, 200, []HeaderField{{"Content-Type", "text/plain"}})))
	f.Add(AppendFrame(nil, FrameWindow, 0, 3, AppendWindow(nil, 65536)))
	f.Add(AppendFrame(nil, FrameWSClose, 0, 3, AppendClose(nil, 1000, "bye")))
	f.Add(AppendFrame(nil, FrameWSAccept, 0, 3, AppendAccept(nil, "chat", nil)))
	f.Add(AppendFrame(nil, FrameWSText, FlagMore, 3, []byte("héllo")))
	f.Add([]byte{4, 0, 1, 0, 0, 0, 2, 0, 0, 0, 200, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, n, err := DecodeFrame(b)
		if err != nil {
			return
		}
		if again := AppendFrame(nil, fr.Type, fr.Flags, fr.Stream, fr.Payload); string(again) != string(b[:n]) {
			t.Fatalf("re-encoding changed the frame:\n% x\n% x", again, b[:n])
		}
		nop := func(k, v []byte) {}
		switch fr.Type {
		case FrameResponseStart:
			_, _ = DecodeResponseStart(fr.Payload, nop)
		case FrameEarlyHints:
			_ = DecodeHeaders(fr.Payload, nop)
		case FrameWindow:
			_, _ = DecodeWindow(fr.Payload)
		case FrameWSClose:
			_, _, _ = DecodeClose(fr.Payload)
		case FrameWSAccept:
			_, _ = DecodeAccept(fr.Payload, nop)
		}
	})
}

// FuzzResponseStart: what a worker may send as a response head decodes into fields that
// re-encode to the same block, and never into a name or value HTTP would refuse.
func FuzzResponseStart(f *testing.F) {
	f.Add(AppendResponseStart(nil, 200, []HeaderField{{"A", "b"}}))
	f.Add([]byte{200, 0, 1, 0, 'X', 1, 0, '\n'})
	f.Fuzz(func(t *testing.T, p []byte) {
		var fields []HeaderField
		status, err := DecodeResponseStart(p, func(k, v []byte) { fields = append(fields, HeaderField{string(k), string(v)}) })
		if err != nil {
			return
		}
		if again := AppendResponseStart(nil, status, fields); string(again) != string(p) {
			t.Fatalf("re-encoding changed the head:\n% x\n% x", again, p)
		}
		for _, h := range fields {
			if !isToken([]byte(h.Name)) || strings.ContainsAny(h.Value, "\r\n\x00") {
				t.Fatalf("decoded a bad field %q: %q", h.Name, h.Value)
			}
		}
	})
}
