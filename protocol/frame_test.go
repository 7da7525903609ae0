package protocol

import (
	"errors"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	b := AppendFrame(nil, FrameResponseBody, FlagEnd, 7, []byte("hello"))
	b = AppendFrame(b, FrameWindow, 0, 7, AppendWindow(nil, 4096))
	f, n, err := DecodeFrame(b)
	if err != nil || f.Type != FrameResponseBody || f.Flags != FlagEnd || f.Stream != 7 || string(f.Payload) != "hello" {
		t.Fatalf("first frame: %+v %v", f, err)
	}
	f, m, err := DecodeFrame(b[n:])
	if err != nil || f.Type != FrameWindow || n+m != len(b) {
		t.Fatalf("second frame: %+v %v", f, err)
	}
	if w, err := DecodeWindow(f.Payload); err != nil || w != 4096 {
		t.Fatalf("window %d %v", w, err)
	}
}

func TestFrameErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"short header", []byte{1, 0, 1}, ErrShortFrame},
		{"short payload", AppendFrameHeader(nil, FrameBody, 0, 1, 5), ErrShortFrame},
		{"type 0", AppendFrameHeader(nil, 0, 0, 1, 0), ErrFrameType},
		{"type 99", AppendFrameHeader(nil, 99, 0, 1, 0), ErrFrameType},
		{"too large", AppendFrameHeader(nil, FrameBody, 0, 1, MaxFramePayload+1), ErrFrameTooLarge},
		{"bad flags", AppendFrameHeader(nil, FrameBody, FlagMore, 1, 0), ErrFrameFlags},
		{"stream 0 body", AppendFrameHeader(nil, FrameBody, 0, 0, 0), ErrFrameStream},
		{"ping on a stream", AppendFrameHeader(nil, FramePing, 0, 3, 0), ErrFrameStream},
		{"window of 3 bytes", AppendFrame(nil, FrameWindow, 0, 1, []byte{1, 2, 3}), ErrFramePayload},
		{"request without a head", AppendFrame(nil, FrameRequest, 0, 1, []byte{0}), ErrFramePayload},
	} {
		if _, _, err := DecodeFrame(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestResponseStart(t *testing.T) {
	p := AppendResponseStart(nil, 201, []HeaderField{{"Content-Type", "text/plain"}, {"X-A", "b\tc"}})
	var got []HeaderField
	status, err := DecodeResponseStart(p, func(k, v []byte) { got = append(got, HeaderField{string(k), string(v)}) })
	if err != nil || status != 201 || len(got) != 2 || got[1].Value != "b\tc" {
		t.Fatalf("%d %v %v", status, got, err)
	}
	for _, bad := range [][]byte{
		AppendResponseStart(nil, 103, nil),
		AppendResponseStart(nil, 600, nil),
		AppendResponseStart(nil, 200, []HeaderField{{"Bad Name", "x"}}),
		AppendResponseStart(nil, 200, []HeaderField{{"X", "a\r\nInjected: 1"}}),
		AppendResponseStart(nil, 200, []HeaderField{{"", "x"}}),
		{200},
	} {
		if _, err := DecodeResponseStart(bad, func(k, v []byte) {}); err == nil {
			t.Errorf("% x decoded", bad)
		}
	}
}

func TestCloseAndAccept(t *testing.T) {
	code, reason, err := DecodeClose(AppendClose(nil, 1012, "service restart"))
	if err != nil || code != 1012 || reason != "service restart" {
		t.Fatalf("%d %q %v", code, reason, err)
	}
	for _, bad := range [][]byte{AppendClose(nil, 5000, ""), AppendClose(nil, 999, ""), AppendClose(nil, 1000, "\xff")} {
		if _, _, err := DecodeClose(bad); err == nil {
			t.Errorf("% x decoded", bad)
		}
	}
	if ValidCloseCode(1005) || ValidCloseCode(1006) || !ValidCloseCode(1012) || !ValidCloseCode(4000) {
		t.Error("ValidCloseCode disagrees with RFC 6455 7.4")
	}
	sub, err := DecodeAccept(AppendAccept(nil, "chat", []HeaderField{{"X-A", "1"}}), func(k, v []byte) {})
	if err != nil || sub != "chat" {
		t.Fatalf("%q %v", sub, err)
	}
	if _, err := DecodeAccept([]byte{9, 0, 'a'}, func(k, v []byte) {}); err == nil {
		t.Fatal("a truncated subprotocol decoded")
	}
}
