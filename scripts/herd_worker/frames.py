"""The framed link's codec (docs/protocol.md, "The framed link"): frames in, frames out,
no I/O. The master's side is protocol/frame.go; change both with that page.

A frame is a 10-byte header, type (uint8), flags (uint8), stream (uint32 LE), length (uint32
LE), then its payload. Decoder.feed() takes bytes as they come and returns whole frames;
a malformed one raises FrameError, after which the link is broken.
"""

import struct

HEADER = struct.Struct('<BBII')
HEADER_SIZE = 10
MAX_PAYLOAD = 1 << 20
INITIAL_WINDOW = 1 << 16

REQUEST = 1
BODY = 2
STARTED = 3
RESPONSE_START = 4
RESPONSE_BODY = 5
SENDFILE = 6
EARLY_HINTS = 7
DISCONNECT = 8
END = 9
WINDOW = 10
WS_CONNECT = 16
WS_ACCEPT = 17
WS_TEXT = 18
WS_BINARY = 19
WS_CLOSE = 20
PING = 30
PONG = 31

FLAG_END = 1
FLAG_MORE = 2

REASON_CLIENT_GONE = 0
REASON_TIMEOUT = 1
REASON_SHUTDOWN = 2

# What the worker accepts from the master: type -> (flags allowed, on stream 0, min, max).
_FROM_MASTER = {
    REQUEST: (FLAG_END, False, 4, MAX_PAYLOAD),
    BODY: (FLAG_END, False, 0, MAX_PAYLOAD),
    DISCONNECT: (0, False, 1, 1),
    WINDOW: (0, False, 4, 4),
    WS_CONNECT: (0, False, 4, MAX_PAYLOAD),
    WS_TEXT: (FLAG_MORE, False, 0, MAX_PAYLOAD),
    WS_BINARY: (FLAG_MORE, False, 0, MAX_PAYLOAD),
    WS_CLOSE: (0, False, 2, 125),
    PING: (0, True, 0, 8),
}

_U16 = struct.Struct('<H')
_U32 = struct.Struct('<I')
_pack_header = HEADER.pack
_unpack_header = HEADER.unpack_from


class FrameError(ValueError):
    """A frame the link's contract refuses: the link is broken."""


class Decoder(object):
    """Splits the master's byte stream into frames, checking each header."""
    __slots__ = ('_buf',)

    def __init__(self):
        self._buf = b''

    def feed(self, data):
        """Returns [(type, flags, stream, payload)] for every whole frame so far."""
        buf = self._buf + data if self._buf else data
        out = []
        pos = 0
        n = len(buf)
        while n - pos >= HEADER_SIZE:
            ftype, flags, stream, size = _unpack_header(buf, pos)
            rule = _FROM_MASTER.get(ftype)
            if rule is None:
                raise FrameError('unknown frame type %d' % ftype)
            if flags & ~rule[0]:
                raise FrameError('frame type %d with flags %#x' % (ftype, flags))
            if rule[1] != (stream == 0):
                raise FrameError('frame type %d on stream %d' % (ftype, stream))
            if size < rule[2] or size > rule[3]:
                raise FrameError('frame type %d of %d bytes' % (ftype, size))
            end = pos + HEADER_SIZE + size
            if end > n:
                break
            out.append((ftype, flags, stream, buf[pos + HEADER_SIZE:end]))
            pos = end
        self._buf = buf[pos:] if pos < n else b''
        return out


def frame(ftype, flags, stream, payload=b''):
    return _pack_header(ftype, flags, stream, len(payload)) + payload


def header(ftype, flags, stream, size):
    return _pack_header(ftype, flags, stream, size)


def headers_block(headers):
    """The headers block of (name, value) byte pairs; raises ValueError for a field the
    master would refuse (a name that is no token, a control byte in a value)."""
    parts = []
    pack = _U16.pack
    for name, value in headers:
        if not isinstance(name, bytes) or not isinstance(value, bytes):
            raise TypeError('header names and values must be bytes, not %r' % ((name, value),))
        if not _is_token(name) or _bad_value(value):
            raise ValueError('invalid header %r: %r' % (name, value))
        parts.append(pack(len(name)) + name + pack(len(value)) + value)
    return b''.join(parts)


def response_start(status, headers):
    if not isinstance(status, int) or not 200 <= status <= 599:
        raise ValueError('invalid status %r' % (status,))
    return _U16.pack(status) + headers_block(headers)


def accept(subprotocol, headers):
    sub = (subprotocol or '').encode('ascii')
    if sub and not _is_token(sub):
        raise ValueError('invalid subprotocol %r' % subprotocol)
    return _U16.pack(len(sub)) + sub + headers_block(headers)


def window(n):
    return _U32.pack(n)


def decode_window(payload):
    n = _U32.unpack(payload)[0]
    if not n:
        raise FrameError('window grant of 0')
    return n


def close(code, reason):
    return _U16.pack(code) + reason.encode('utf-8')[:123]


def decode_close(payload):
    code = _U16.unpack_from(payload)[0]
    try:
        reason = payload[2:].decode('utf-8')
    except UnicodeDecodeError:
        raise FrameError('close reason is not UTF-8')
    return code, reason


_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789"
                   b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_BAD = frozenset(set(range(0, 32)) - {9} | {127})


def _is_token(b):
    return bool(b) and _TOKEN.issuperset(b)


def _bad_value(b):
    return not _BAD.isdisjoint(b)
